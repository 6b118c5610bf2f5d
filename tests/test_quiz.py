"""emu quiz: each kind's solver against problems worked by hand.

Every expected answer below was worked out on paper from the IA-32 rules
(Intel SDM vol. 3A, 4.3, 4.6, 4.7: entry bits, combined rights, CR0.WP,
the #PF error code) and the design notes (docs/design.md: the six steps, A/D
kept exact by the VMM, the 2D walk's (2+1)(2+1)-1 references, the cost
model of emu/cost.py), then written here literally.  The solver's answers
come from running the project's hardware and VMM on the problem's guest
program; where the program prints its own results (translate), it is also
run in every mode in the ordinary way and its console compared.
"""

from __future__ import annotations

import pytest

from emu.asm import assemble
from emu.quiz import adshadow, cost, nestedwalk, sixsteps, tlbkind, translate
from emu.quiz.common import Problem
from emu.quiz.harness import Access, Invlpg, Layout, Reload, ResumeAt
from emu.system import MODES, Config, System


def solve(mod, spec, difficulty: int = 1):
    return mod.work(Problem(mod.NAME, 0, 1, difficulty, spec))


def run(source: str, mode: str, **config) -> System:
    system = System(assemble(source, "quiz.s"), Config(mode=mode, **config))
    result = system.run()
    assert (result.outcome, result.exit_status) == ("poweroff", 0), result.message
    return system


# --- translate ----------------------------------------------------------------------------
#   CR3 = 0x100000, CR0.WP = 1, CR4.PSE = 1
#   gpde[1] = 0x00101027  P W U A   -> page table at 0x101000
#   gpde[2] = 0x00c00083  P W s PS  -> 4 MiB page at 0xc00000, supervisor
#   gpde[3] = 0                     not present
#   gpte[5] = 0x00205067  P W U A D ; gpte[6] = 0x00206005  P r U ; gpte[7] = 0x00207003  P W s
TRANSLATE = Layout(pd=0x100000, pdes={1: 0x00101027, 2: 0x00C00083, 3: 0},
                   tables={0x101000: {5: 0x00205067, 6: 0x00206005, 7: 0x00207003}},
                   wp=True, pse=True, prime_stack=True)
TRANSLATE_ACCESSES = (
    Access("read", 0x00405120, user=True, guard=True),              # pa 0x205120
    Access("write", 0x00406010, user=True, value=0x5EED0002, guard=True),   # R/W=0: P W U = 7
    Access("write", 0x00406018, value=0x5EED0003, guard=True),      # kernel, WP=1: P W = 3
    Access("read", 0x00407FF0, user=True, guard=True),              # U/S=0: P U = 5
    Access("fetch", 0x00812340, guard=True),                        # 0xc00000 + 0x12340
    Access("read", 0x00C00010, user=True, guard=True),              # gpde np: U = 4
    Access("read", 0x00408018, guard=True),                         # gpte np: 0
    Access("write", 0x00812348, user=True, value=0x5EED0008, guard=True),   # supervisor 4M: 7
)
TRANSLATE_ANSWER = [{"pa": 0x00205120}, {"error_code": 7}, {"error_code": 3},
                    {"error_code": 5}, {"pa": 0x00C12340}, {"error_code": 4},
                    {"error_code": 0}, {"error_code": 7}]
TRANSLATE_CONSOLE = """\
1: read 0x00205120
2: #PF error 0x00000007
3: #PF error 0x00000003
4: #PF error 0x00000005
5: fetched 0x00c12340
6: #PF error 0x00000004
7: #PF error 0x00000000
8: #PF error 0x00000007
"""


def test_translate_hand_worked():
    w = solve(translate, translate.Spec(TRANSLATE, TRANSLATE_ACCESSES))
    assert w.answer == {"accesses": TRANSLATE_ANSWER}
    assert w.solution[1] == "#PF, error code 0x7 [P W U]: protection"
    assert w.why[3] == ("gpde[0x001] = 0x00101027, gpte[0x007] = 0x00207003: U/S=0 in the "
                        "gpte: a user access to a supervisor page")
    assert w.why[4] == ("gpde[0x002] = 0x00c00083: a 4 MiB page at 0x00c00000, + va[21:0] "
                        "0x012340 = pa 0x00c12340")


@pytest.mark.parametrize("mode", MODES)
def test_translate_program_prints_the_answers_in_every_mode(mode):
    w = solve(translate, translate.Spec(TRANSLATE, TRANSLATE_ACCESSES))
    system = run(w.program, mode)
    assert system.console.text() == TRANSLATE_CONSOLE


def test_translate_state_is_the_table_as_the_stepper_prints_it():
    w = solve(translate, translate.Spec(TRANSLATE, TRANSLATE_ACCESSES))
    assert w.state[0].title == "CR3 = 0x00100000 · CR0.WP = 1 · CR4.PSE = 1"
    assert w.state[1].lines == (
        "gpde[0x000] at pa 0x00100000 = 0x0000a007  P W U  "
        "(the quiz kernel's map of va 0-4 MiB; not asked)",
        "gpde[0x001] at pa 0x00100004 = 0x00101027  P W U A",
        "gpde[0x002] at pa 0x00100008 = 0x00c00083  P W s PS  (4 MiB page)",
        "(the other 1021 entries are 0)")
    assert w.state[2].lines == (
        "gpte[0x005] at pa 0x00101014 = 0x00205067  P W U A D",
        "gpte[0x006] at pa 0x00101018 = 0x00206005  P r U",
        "gpte[0x007] at pa 0x0010101c = 0x00207003  P W s",
        "(the other 1021 entries are 0)")


# --- six steps ----------------------------------------------------------------------------
#   gpde[1] = 0x00101027 P W U A -> table 0x101000; gpde[2] = 0x00102027 -> table 0x102000
#   0x101000: [0] 0x00200023 P W s A      (the warm-up page)
#             [1] 0x00201007 P W U        (clean, never accessed)
#             [2] 0x00202025 P r U A      (read-only)
#             [3] 0x00203023 P W s A      (writable, clean)
#             [4] 0                       (not present)
#   0x102000: [5] 0x00101003 P W s        (a window on the table at 0x101000: va 0x805000)
SIX = Layout(pd=0x100000, pdes={1: 0x00101027, 2: 0x00102027},
             tables={0x101000: {0: 0x00200023, 1: 0x00201007, 2: 0x00202025,
                                3: 0x00203023, 4: 0},
                     0x102000: {5: 0x00101003}},
             wp=True, prime_stack=True)
WARM = Access("read", 0x00400010, guard=True)


def six(before, question):
    spec = sixsteps.Spec(SIX, tuple(before), question, "hand",
                         (0x100, 0x101, 0x102, 0x200, 0x201, 0x202, 0x203))
    return solve(sixsteps, spec).answer


def test_six_steps_hidden_fault_read_of_a_clean_page():
    # The guest allows a user read; the shadow has no spte: hidden fault.  The
    # VMM's walk sets the gpte's A; the page is clean (D=0), so the spte is
    # read-only: P r U = 0x005; the restart's hardware walk sets A in it.
    a = six([WARM], Access("read", 0x00401020, user=True, guard=True))
    assert (a["outcome"], a["error_code"]) == ("hidden", None)
    spte = a["spte"]
    assert spte["ma"] & 0xFFF == 1 * 4 and spte["value"] & 0xFFF == 0x005
    assert a["changed"] == [
        {"entry": "gpte", "pa": 0x00101004, "value": 0x00201027},
        {"entry": "spte", "ma": spte["ma"], "value": spte["value"] | 0x20}]


def test_six_steps_true_fault_user_write_to_a_read_only_page():
    # gpte R/W=0: the guest's own walk refuses a user write: P W U = 7,
    # injected; a refused walk sets no A (it was set already), nothing changes.
    a = six([WARM], Access("write", 0x00402030, user=True, value=1, guard=True))
    assert a == {"outcome": "true", "error_code": 7, "spte": None, "changed": []}


def test_six_steps_true_fault_not_present():
    a = six([WARM], Access("read", 0x00404040, user=True, guard=True))
    assert a == {"outcome": "true", "error_code": 4, "spte": None, "changed": []}


def test_six_steps_dirty_fault_sets_d():
    # The kernel read left a read-only spte (P r s, A by the walk = 0x021);
    # the write exits, the VMM sets the gpte's D and writes the spte P W s
    # (0x003); the restart's walk sets A and D in it (0x063).
    a = six([Access("read", 0x00403010, guard=True)],
            Access("write", 0x00403020, value=2, guard=True))
    assert (a["outcome"], a["error_code"]) == ("dirty", None)
    spte = a["spte"]
    assert spte["ma"] & 0xFFF == 3 * 4 and spte["value"] & 0xFFF == 0x003
    assert a["changed"] == [
        {"entry": "gpte", "pa": 0x0010100C, "value": 0x00203063},
        {"entry": "spte", "ma": spte["ma"], "value": spte["value"] | 0x60}]


def test_six_steps_tlb_hit_and_shadow_walk():
    assert six([WARM], Access("read", 0x00400800, guard=True)) == {
        "outcome": "tlb-hit", "error_code": None, "spte": None, "changed": []}
    # After a CR3 reload the TLB is empty but the shadow (trace-cache) is not:
    # the hardware's walk succeeds, no exit; its A bits are set already.
    assert six([WARM, Reload()], Access("read", 0x00400100, guard=True)) == {
        "outcome": "shadow-walk", "error_code": None, "spte": None, "changed": []}


def test_six_steps_tracing_fault_emulates_the_write():
    # The warm-up shadowed the table at 0x101000, so the VMM write-protects it:
    # a kernel write through the window (va 0x805010 = entry 4) exits, and is
    # emulated: gpte[4] takes the value; the window's gpte gets A and D (the
    # write went through it); pdx 2 gets its first spde (the gpde's P W U, A
    # from the walk: 0x027); the window's spte is left read-only, A and D set.
    a = six([WARM], Access("write", 0x00805010, value=0x00209027, guard=True))
    assert (a["outcome"], a["error_code"], a["spte"]) == ("tracing", None, None)
    guest = [c for c in a["changed"] if c["entry"][0] == "g"]
    shadow = [c for c in a["changed"] if c["entry"][0] == "s"]
    assert guest == [{"entry": "gpte", "pa": 0x00101010, "value": 0x00209027},
                     {"entry": "gpte", "pa": 0x00102014, "value": 0x00101063}]
    assert [c["entry"] for c in shadow] == ["spde", "spte"]
    assert shadow[0]["ma"] & 0xFFF == 2 * 4 and shadow[0]["value"] & 0xFFF == 0x027
    assert shadow[1]["ma"] & 0xFFF == 5 * 4 and shadow[1]["value"] & 0xFFF == 0x061
    assert shadow[1]["ma"] & ~0xFFF == shadow[0]["value"] & ~0xFFF


def test_six_steps_wp_emulate():
    layout = Layout(pd=0x100000, pdes={1: 0x00101027}, tables={0x101000: {0: 0x00200021}},
                    wp=False, prime_stack=True)
    spec = sixsteps.Spec(layout, (Access("read", 0x00400010, guard=True),),
                         Access("write", 0x00400020, value=3, guard=True), "hand", (0x200,))
    a = solve(sixsteps, spec).answer
    assert (a["outcome"], a["error_code"], a["spte"]) == ("wp-emulate", None, None)
    # the emulated write goes through the guest's read-only page: it sets D
    assert {"entry": "gpte", "pa": 0x00101000, "value": 0x00200061} in a["changed"]


# --- nested walk ------------------------------------------------------------------------
#   gpde[1] = 0x00101027 -> table 0x101000; gpte[0] = 0x00200027, gpte[1] = 0x00201027,
#   gpte[2] = 0 (not present); gpde[2] = 0x00c000a7: a 4 MiB page (CR4.PSE=1).
NESTED = Layout(pd=0x100000, pdes={1: 0x00101027, 2: 0x00C000A7},
                tables={0x101000: {0: 0x00200027, 1: 0x00201027, 2: 0}},
                wp=True, pse=True, pge=True, global_harness=True, prime_stack=True)


NESTED_WARM = (Access("read", 0x00400010),)


def nested(question, ntlb: int, before=NESTED_WARM):
    spec = nestedwalk.Spec(NESTED, (*before, ResumeAt("done"), Reload()), question, ntlb,
                           "hand")
    w = solve(nestedwalk, spec)
    entries = {e["ma"]: e["value"] for e in w.state_json["nested"]}
    return w.answer, w.state_json["ncr3"], entries


def npde_at(ncr3: int, pa: int) -> int:
    return ncr3 + 4 * (pa >> 22)


def npte_at(entries: dict, ncr3: int, pa: int) -> int:
    return (entries[npde_at(ncr3, pa)] & ~0xFFF) + 4 * ((pa >> 12) & 0x3FF)


def ma_of(entries: dict, ncr3: int, pa: int) -> int:
    return (entries[npte_at(entries, ncr3, pa)] & ~0xFFF) | (pa & 0xFFF)


def test_nested_walk_cold_makes_eight_references():
    # No NTLB: each of the three guest-physical addresses (CR3's directory,
    # the gpde's table, the data page) is translated by npde then npte, and
    # the guest's gpde and gpte are read between: (2+1)(2+1)-1 = 8.
    a, ncr3, e = nested(Access("read", 0x00400020), ntlb=0)
    pd, pt, page = 0x100000 + 4 * 1, 0x101000 + 4 * 0, 0x200000
    assert a["outcome"] == "tlb-fill" and a["refs"] == 8
    assert [(r["what"], r["ma"]) for r in a["references"]] == [
        ("npde", npde_at(ncr3, pd)), ("npte", npte_at(e, ncr3, pd)), ("gpde", ma_of(e, ncr3, pd)),
        ("npde", npde_at(ncr3, pt)), ("npte", npte_at(e, ncr3, pt)), ("gpte", ma_of(e, ncr3, pt)),
        ("npde", npde_at(ncr3, page)), ("npte", npte_at(e, ncr3, page))]


def test_nested_walk_large_guest_page_makes_five():
    # A 4 MiB guest page: no gpte row, (1+1)(2+1)-1 = 5.
    a, ncr3, e = nested(Access("read", 0x00812340), ntlb=0,
                        before=(Access("read", 0x00812000),))
    assert (a["outcome"], a["refs"]) == ("tlb-fill", 5)
    assert [r["what"] for r in a["references"]] == ["npde", "npte", "gpde", "npde", "npte"]
    assert a["references"][2]["ma"] == ma_of(e, ncr3, 0x100000 + 4 * 2)


def test_nested_walk_warm_ntlb_leaves_the_guest_references():
    # The warm-up walked the same directory, table and page a moment ago: all
    # three are in the NTLB, only the gpde and gpte are read.
    a, ncr3, e = nested(Access("read", 0x00400020), ntlb=16)
    assert (a["outcome"], a["refs"]) == ("tlb-fill", 2)
    assert [(r["what"], r["ma"]) for r in a["references"]] == [
        ("gpde", ma_of(e, ncr3, 0x100004)), ("gpte", ma_of(e, ncr3, 0x101000))]


def test_nested_walk_guest_fault_and_ept_violation():
    # gpte[2] not present: the walk stops after the gpte: 6 references, #PF.
    a, _, _ = nested(Access("read", 0x00402000), ntlb=0)
    assert (a["outcome"], a["refs"]) == ("page-fault", 6)
    # Page 0x201000 was never touched: no npte yet; the walk reads the data
    # row's npde and (empty) npte and stops: 8 references, an EPT violation.
    a, ncr3, e = nested(Access("read", 0x00401000), ntlb=0)
    assert (a["outcome"], a["refs"]) == ("ept-violation", 8)
    assert a["references"][-1] == {"what": "npte", "ma": npte_at(e, ncr3, 0x201000)}
    assert npte_at(e, ncr3, 0x201000) not in e       # the npte is 0


def test_nested_walk_global_entry_survives_the_reload():
    layout = Layout(pd=0x100000, pdes={1: 0x00101027},
                    tables={0x101000: {0: 0x00200127}},   # G=1
                    wp=True, pge=True, global_harness=True, prime_stack=True)
    spec = nestedwalk.Spec(layout, (Access("read", 0x00400010), ResumeAt("done"), Reload()),
                           Access("read", 0x00400020), 0, "hand")
    assert solve(nestedwalk, spec).answer == {"outcome": "tlb-hit", "refs": 0,
                                              "references": []}


# --- TLB -----------------------------------------------------------------------------------
#   A, B, C in set 0 (even vpn), D in set 1; 4 entries, 2 ways: 2 sets.
A, B, C, D = 0x00400000, 0x00402000, 0x00404000, 0x00401000
TLB_TABLE = Layout(pd=0x100000, pdes={1: 0x00101023},
                   tables={0x101000: {i: ((0x200 + i) << 12) | 0x063 for i in range(5)}})


def tlb(policy, steps, layout=TLB_TABLE, entries=4, ways=2):
    spec = tlbkind.Spec(layout, tuple(steps), entries, ways, policy)
    return solve(tlbkind, spec).answer


def reads(*vas):
    return [Access("read", va | 0x10) for va in vas]


def test_tlb_lru_and_fifo_differ_on_the_same_accesses():
    seq = reads(A, B, A, C, B, D, A)
    # LRU, set 0: A, B; A hit (B is now oldest); C evicts B; B evicts A;
    # D goes to set 1; A evicts C.
    assert tlb("lru", seq) == {"accesses": ["miss", "miss", "hit", "miss", "miss", "miss",
                                            "miss"], "sets": [[B, A], [D]]}
    # FIFO: the hit does not refresh A: C evicts A; B hits; A evicts B.
    assert tlb("fifo", seq) == {"accesses": ["miss", "miss", "hit", "miss", "hit", "miss",
                                             "miss"], "sets": [[C, A], [D]]}


def test_tlb_global_entries_survive_a_reload_not_invlpg():
    table = {0x101000: {0: 0x00200163, 2: 0x00202063}}      # A global, B not
    layout = Layout(pd=0x100000, pdes={1: 0x00101023}, tables=table, pge=True)
    steps = [*reads(A, B), Reload(), *reads(A, B), Invlpg(A), *reads(A)]
    assert tlb("lru", steps, layout, entries=4, ways=4) == {
        "accesses": ["miss", "miss", "hit", "miss", "miss"], "sets": [[B, A]]}


def test_tlb_program_leaves_the_same_sets_natively():
    seq = reads(A, B, A, C, B, D, A)
    spec = tlbkind.Spec(TLB_TABLE, tuple(seq), 4, 2, "fifo")
    w = solve(tlbkind, spec)
    system = run(w.program, "native", tlb_entries=4, tlb_ways=2, tlb_policy="fifo")
    assert [[vpn << 12 for vpn in s] for s in system.dtlb.sets] == [[C, A], [D]]


# --- A/D under shadow -------------------------------------------------------------------
#   gpde[1] = 0x00101007 P W U (A clear); pages: P1 = 0x00201007 P W U,
#   P2 = 0x00202027 P W U A, P3 = 0x00203003 P W s, P4 = 0x00204067 P W U A D (untouched)
AD = Layout(pd=0x100000, pdes={1: 0x00101007},
            tables={0x101000: {1: 0x00201007, 2: 0x00202027, 3: 0x00203003, 4: 0x00204067}},
            wp=True, prime_stack=True)
P1, P2, P3, P4 = 0x00401000, 0x00402000, 0x00403000, 0x00404000
AD_STEPS = (Access("read", P1 | 0x10, user=True, guard=True),        # hidden: A
            Access("write", P1 | 0x20, user=True, value=1, guard=True),   # dirty: D
            Access("write", P3 | 0x30, value=2, guard=True),         # hidden (a write): A, D
            Access("write", P3 | 0x40, value=3, guard=True),         # TLB hit
            Reload(),
            Access("read", P2 | 0x50, user=True, guard=True),        # hidden
            Access("read", P1 | 0x60, guard=True))                   # shadow walk / hidden


def ad(policy):
    pages = tuple((1, va, 0x101000 + 4 * ((va >> 12) & 0x3FF)) for va in (P1, P2, P3, P4))
    return solve(adshadow, adshadow.Spec(AD, AD_STEPS, pages, policy))


def test_ad_under_shadow_trace_cache():
    w = ad("trace-cache")
    assert w.answer == {
        "exits": ["hidden", "dirty", "hidden", "none", "hidden", "none"],
        "gpdes": [True],
        "gptes": [{"a": True, "d": True}, {"a": True, "d": False}, {"a": True, "d": True},
                  {"a": True, "d": True}]}


def test_ad_under_shadow_trace_drop_refills_after_the_reload():
    # trace-drop frees every shadow at a CR3 load: the last read exits again.
    w = ad("trace-drop")
    assert w.answer["exits"] == ["hidden", "dirty", "hidden", "none", "hidden", "hidden"]
    assert w.answer["gptes"] == ad("trace-cache").answer["gptes"]


def test_ad_bits_are_those_the_hardware_sets_natively():
    w = ad("trace-cache")
    for mode in ("native", "nested"):
        system = run(w.program, mode)
        table = system.guest_read(0x101000, 20)
        gptes = [int.from_bytes(table[4 * i:4 * i + 4], "little") for i in (1, 2, 3, 4)]
        assert [{"a": bool(g & 0x20), "d": bool(g & 0x40)} for g in gptes] == \
            w.answer["gptes"]
        assert bool(int.from_bytes(system.guest_read(0x100004, 4), "little") & 0x20)


# --- cost -----------------------------------------------------------------------------------
#   gpde[1] = 0x00101027; gpte[0] = 0x00200067 (touched first), gpte[1] = 0x00201067 (fresh).
COST = Layout(pd=0x100000, pdes={1: 0x00101027},
              tables={0x101000: {0: 0x00200067, 1: 0x00201067}},
              wp=True, pge=True, global_harness=True, prime_stack=True)


def test_cost_of_one_read_of_a_fresh_page():
    # The trace: one kernel read of a page never touched, through a table the
    # warm-up used.  mov eax, [m]: 1 cycle + 1 memory reference = 2 (guest).
    #   native: a 2-reference walk: 40.
    #   shadow: the faulting shadow walk (spde present, spte not: 2 refs) and
    #     the restart's (2): walk 80; exit 600, entry 400; guest walk 2 x 20;
    #     PMap 30; a page allocated and zeroed 100 + 512; an spte 40.
    #   nested (16-entry NTLB, holding the directory and the table): walk one
    #     reads gpde, gpte, then the data page's npde and its empty npte: 4
    #     refs, an EPT violation; the restart, the same 4: walk 160; exit 600,
    #     entry 400; PMap 30; allocation 612; the npte 40.
    spec = cost.Spec(COST, (Access("read", 0x00400010),), (Access("read", 0x00401020),))
    w = solve(cost, spec)
    assert w.answer == {
        "cycles": {
            "native": {"guest": 2, "walk": 40},
            "shadow": {"guest": 2, "walk": 80, "vm_exit": 600, "vm_entry": 400,
                       "vmm_alloc": 612, "vmm_fill_nested": 0, "vmm_fill_shadow": 40,
                       "vmm_guest_walk": 40, "vmm_pmap": 30},
            "nested": {"guest": 2, "walk": 160, "vm_exit": 600, "vm_entry": 400,
                       "vmm_alloc": 612, "vmm_fill_nested": 40, "vmm_fill_shadow": 0,
                       "vmm_guest_walk": 0, "vmm_pmap": 30}},
        "winner": "shadow"}          # 1,804 cycles against 1,844


def test_cost_of_a_reload_and_a_walk():
    # Reload CR3, then read the warm page: natively 4 (mov eax, imm; mov cr3)
    # + 2 guest cycles and a 2-reference walk; under shadow paging the reload
    # is an exit (600 + 400) and a flush (50), the walk finds the spte; under
    # nested paging the reload is the guest's own, the walk has NTLB hits for
    # the three pages: gpde and gpte only.
    spec = cost.Spec(COST, (Access("read", 0x00400010),),
                     (Reload(), Access("read", 0x00400020)))
    w = solve(cost, spec)
    assert w.answer == {
        "cycles": {"native": {"guest": 7, "walk": 40},
                   "shadow": {"guest": 7, "walk": 40, "vm_exit": 600, "vm_entry": 400,
                              "vmm_cr3": 50},
                   "nested": {"guest": 7, "walk": 40, "vm_exit": 0, "vm_entry": 0,
                              "vmm_cr3": 0}},
        "winner": "nested"}
