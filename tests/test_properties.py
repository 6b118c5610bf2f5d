"""Differential property tests: a random guest kernel gives the same
guest-visible result natively, under every shadow policy and under nested
paging, with the resource-control invariant checked after every VM exit.

The guests come from ``tests/guestgen.py`` as assembly text.  In the long
run the first failing kernel is minimized (``guestgen.minimize``: its
operations dropped and its entries cleared wherever it still fails, the
model compiling each candidate again) and saved to ``tests/regressions/``,
where ``test_regression`` replays it in every mode from then on.

Every generated kernel also runs natively with several TLB shapes
(``guestgen.NATIVE_TLBS``: one entry, fully associative, unified, random
replacement, one that never evicts): the generator's TLB rules promise that
no access depends on what a TLB holds, so all of them must agree too.

Profiles (environment variable ``EMU_HYPOTHESIS``):

    ci     (default) 30 generated kernels and 25 garbage-table kernels,
           derandomized: CI is reproducible (about 30 s)
    long   EMU_EXAMPLES examples (default 1000) per property, a fresh random
           seed (or EMU_SEED)

    EMU_HYPOTHESIS=long python -m pytest tests/test_properties.py
    python tests/test_properties.py --kernels 10000     # the same, with figures
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestgen  # noqa: E402
from harness import PGTAB, paging_on, run_snippet  # noqa: E402

from emu import programs  # noqa: E402
from emu.cli import build_parser, config_from  # noqa: E402

REGRESSIONS = pathlib.Path(__file__).resolve().parent / "regressions"
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          database=None, suppress_health_check=_QUIET, print_blob=True)
# The long run does not let hypothesis shrink (it knows nothing of
# operations and gives up after five minutes on these guests): the first
# failing guest goes to ``guestgen.minimize`` instead.
settings.register_profile("long", max_examples=int(os.environ.get("EMU_EXAMPLES", "1000")),
                          deadline=None, database=None, suppress_health_check=_QUIET,
                          print_blob=True, phases=(Phase.explicit, Phase.reuse, Phase.generate))
PROFILE = settings.get_profile(os.environ.get("EMU_HYPOTHESIS", "ci"))
LONG = os.environ.get("EMU_HYPOTHESIS") == "long"
GENERATED = PROFILE if LONG else settings(PROFILE, max_examples=30)
_SEED = os.environ.get("EMU_SEED")
SEEDED = seed(int(_SEED)) if LONG and _SEED else (lambda test: test)

# What the properties did in this process (``python tests/test_properties.py``
# prints them): guests generated, runs, invariant checks, faults predicted,
# invalidation events that freshened a stale page (by kind), failing kernels
# (shrinking included) and when the first one came.
FIGURES = {"programs": 0, "garbage_programs": 0, "runs": 0, "invariant_checks": 0,
           "faults_predicted": 0, "failures": 0, "events": {}, "first_failure": None,
           "started": None}


def _count(results) -> None:
    FIGURES["runs"] += len(results)
    for _, system, _ in results:
        FIGURES["invariant_checks"] += getattr(system.vmm, "invariant_checks", 0)


def _save_regression(prog, why: str) -> None:
    """Keep the shrunk failing program (the last one hypothesis runs)."""
    FIGURES["failures"] += 1
    if FIGURES["first_failure"] is None:
        import time
        FIGURES["first_failure"] = (FIGURES["programs"] + FIGURES["garbage_programs"],
                                    time.perf_counter() - (FIGURES["started"] or 0))
    try:
        from hypothesis.control import current_build_context
        final = current_build_context().is_final
    except Exception:
        final = True
    if not final or os.environ.get("EMU_SAVE_REGRESSIONS") == "0":
        return
    if LONG and prog.plan is not None:
        ops = prog.ops
        prog = guestgen.minimize(prog, _still_fails)
        why += f" (minimized from {ops} operations to {prog.ops})"
    REGRESSIONS.mkdir(exist_ok=True)
    header = "; regression: " + why.splitlines()[0][:300] + "\n"
    if prog.plan is not None:       # (to compile it again with a later generator)
        header += "; plan: " + json.dumps(prog.plan, separators=(",", ":")) + "\n"
    (REGRESSIONS / f"{prog.name}.s").write_text(header + prog.source)


def _still_fails(prog) -> bool:
    """Does ``prog`` still fail (in the configurations that failed)?"""
    from emu.errors import AsmError
    try:
        results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields(),
                                          only=FOCUS or None)
    except AsmError:
        return False                    # (a generator mistake, not this failure)
    except Exception:
        return True                     # an invariant violation, an internal error
    native = results[0][2]
    if not prog.garbage and ((native.outcome, native.exit_status) != ("poweroff", 0) or
                             guestgen.fault_log(results[0][1]) != prog.expected_faults):
        return True
    return bool(differences(results))


# Once a long run has failed, each candidate of the minimizer runs native
# and the configurations that failed only (``_focus``).
FOCUS: set[str] = set()


def _focus(results, model_differs: bool) -> None:
    if LONG and not FOCUS:
        FOCUS.update(label for label, _ in _diverging(results))
        if model_differs or results[0][2].outcome != "poweroff":
            FOCUS.add("(native only)")


def _diverging(results):
    _, _, native = results[0]
    want = native.guest_visible()
    for label, _, r in results[1:]:
        got = r.guest_visible()
        if native.outcome == "budget" and r.outcome == "budget":
            continue
        bad = [k for k in want if got[k] != want[k]]
        if bad:
            yield label, bad


def differences(results, tolerate=()) -> list[str]:
    """One line per run whose guest-visible result differs from native."""
    _, _, native = results[0]
    want = native.guest_visible()
    out = []
    for label, _, r in results[1:]:
        got = r.guest_visible()
        if native.outcome == "budget" and r.outcome == "budget":
            # The budget is in cycles, and a VMM's work takes some of them:
            # a guest that runs away stops at a different instruction.
            continue
        bad = [k for k in want if got[k] != want[k] and k not in tolerate]
        if bad:
            out.append(f"{label} differs from native in {', '.join(bad)}: "
                       + "; ".join(f"{k} {got[k]!r} != {want[k]!r}" for k in bad
                                   if k != "console")[:300])
    return out


@GENERATED
@SEEDED
@given(guestgen.guest_programs())
def test_generated_guests_agree_in_every_mode(prog):
    """Random page tables, remaps, demotions, freed tables, self-modifying
    code, CR3 switches, user and kernel accesses, stale translations made
    fresh by every invalidation event, faults handled by the guest: one
    guest-visible result in every mode and with every TLB shape, and the
    faults the generator's paging model predicts."""
    FIGURES["programs"] += 1
    FIGURES["faults_predicted"] += len(prog.expected_faults)
    for how, count in prog.events.items():
        FIGURES["events"][how] = FIGURES["events"].get(how, 0) + count
    try:
        results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields(),
                                          only=FOCUS or None)
        _count(results)
        _, native_sys, native = results[0]
        faults = guestgen.fault_log(native_sys)
        _focus(results, faults != prog.expected_faults)
        assert (native.outcome, native.exit_status) == ("poweroff", 0), native.message
        assert faults == prog.expected_faults, (
            f"the native #PF log {[(hex(a), b) for a, b in faults]} is not the model's "
            f"{[(hex(a), b) for a, b in prog.expected_faults]}")
        diffs = differences(results)
        assert not diffs, "\n".join(diffs)
    except Exception as e:
        _save_regression(prog, f"{type(e).__name__}: {e}")
        raise


@PROFILE
@given(guestgen.garbage_programs())
def test_garbage_page_tables_end_the_same_way_everywhere(prog):
    """Entries with random bits, frames outside RAM, entries naming the
    guest's own tables, CR3 at another directory, a data page or outside RAM:
    every mode ends with a report (poweroff, crash or budget), the same
    guest-visible result, no Python exception out of ``System.run`` and the
    invariant intact after every exit."""
    FIGURES["garbage_programs"] += 1
    try:
        results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields(),
                                          tlbs=guestgen.GARBAGE_TLBS)
        _count(results)
        for label, _, r in results:
            assert r.outcome in ("poweroff", "crash", "budget"), (label, r.outcome)
            assert r.message, label
        diffs = differences(results)
        assert not diffs, "\n".join(diffs)
    except Exception as e:
        _save_regression(prog, f"{type(e).__name__}: {e}")
        raise


# --- the regressions: every saved program, in every mode --------------------------------
def _regression_params():
    out = []
    for path in sorted(REGRESSIONS.glob("*.s")):
        marks = []
        for line in path.read_text(encoding="utf-8").splitlines()[:5]:
            if line.startswith("; xfail:"):
                marks.append(pytest.mark.xfail(strict=True, reason=line[8:].strip()))
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


@pytest.mark.parametrize("path", _regression_params())
def test_regression(path):
    args = build_parser().parse_args(["run", str(path), *programs.default_options(str(path))])
    cfg = config_from(args)
    fields = {f: getattr(cfg, f) for f in ("mem_mib", "tlb_entries", "tlb_ways", "tlb_kind",
                                          "tlb_large", "max_cycles", "clock", "seed",
                                          "tlb_policy")}
    source = path.read_text(encoding="utf-8")
    tlbs = guestgen.GARBAGE_TLBS if guestgen.is_garbage(source) else guestgen.NATIVE_TLBS
    results = guestgen.run_everywhere(source, str(path), fields, tlbs=tlbs)
    for label, _, r in results:
        assert r.outcome in ("poweroff", "crash", "budget"), (label, r.message)
    diffs = differences(results)
    assert not diffs, "\n".join(diffs)


def test_there_is_a_regression_to_replay():
    assert _regression_params(), "tests/regressions/ holds no program"


# --- the generator's own rules (bugs in the generator, not in the emulator) ----------
def test_the_handler_is_never_asked_to_fix_an_entry_it_cannot_reach():
    # The guest's #PF handler writes the entry through the kernel's identity
    # map (0..4 MiB).  A remap can make a 4 MiB frame (0x400000) a page table;
    # a fix there would land in kpt instead, and the retry fault again.
    assert guestgen.Compiler._fix_ok(((0x110004, ~0, 1),))
    assert not guestgen.Compiler._fix_ok(((0x400004, ~0, 1),))
    assert not guestgen.Compiler._fix_ok(((0x110004, ~0, 1), (0x800000, ~0, 4)))


PAST_RAM = {
    # A crossing write through an alias of a page table (frame4 is both)
    # writes half a dword into a PTE, which then maps pa 0x50074000; the
    # next operation reads that page (regressions/bus_error_access_past_ram.s).
    "half a dword": ({"pge": False, "wp": False, "timer": 0, "tlb": [16, 1, "unified", 4],
                      "pdes": [[2113541, 0, 0], [0, 0, 0], [0, 0, 0]],
                      "ptes": [[0, 0, 0], [2115591, 2117637, 0], [0, 0, 0], [0, 0, 0],
                               [0, 0, 0], [0, 0, 0]],
                      "ops": [["edit", 3, "pde", 1118225, "none"],
                              ["access", "write", 0, 3, "cross", 1, 1, 2117639, "skip", "pge"],
                              ["access", "fetch", 3, 2, "0x7fc", 3, 1, 2123779, "fix", "wp"]]},
                     "va 0x007ff000 maps pa 0x50074000", "mov eax, [0x007ff7fc]"),
    # A page table freed and reused as data holds a not-present "PTE" past
    # RAM; a crossing read faults on it, the handler sets P, and the retry
    # reads past RAM before the second page's fault
    # (regressions/bus_error_fixed_entry_past_ram.s).
    "the handler's fix": ({"pge": False, "wp": True, "timer": 0, "tlb": [16, 1, "unified", 4],
                           "pdes": [[0, 0, 0]] * 3, "ptes": [[0, 0, 0]] * 6,
                           "ops": [["recycle", 1, [2088410288, 2107908, 0], "cr3-other"],
                                   ["stale", 0, "pte", 1118209, False, "write", 0, "skip",
                                    "pse"],
                                   ["access", "fetch", 0, 0, "cross", 2, 0, 2124290, "fix",
                                    "invlpg"]]},
                          "va 0x00400000 maps pa 0x7c7a9000", "mov eax, [0x00400ffe]"),
}


@pytest.mark.parametrize("case", PAST_RAM)
def test_no_access_reaches_a_page_past_ram(case):
    plan, comment, access = PAST_RAM[case]
    prog = guestgen.compile_plan(plan)
    assert f"; (no access: {comment}, past RAM)" in prog.source
    assert access not in prog.source
    results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields())
    assert {(r.outcome, r.exit_status) for _, _, r in results} == {("poweroff", 0)}
    assert not differences(results)


def test_with_pge_every_kernel_pde_starts_accessed():
    # Whether a walk through another directory's kernel PDE happens depends
    # on the TLB's size while kernel entries are global.
    plan = {"pge": True, "wp": True, "timer": 0, "tlb": (64, 4, "split", 8),
            "max_cycles": 3_000_000, "pdes": [[0] * len(guestgen.PDX_SET)] * guestgen.N_PD,
            "ptes": [[0] * len(guestgen.PTX_SET)] * guestgen.N_PT, "ops": []}
    prog = guestgen.compile_plan(plan)
    for pd in guestgen.PDS:
        assert guestgen._at(pd) in prog.source
    assert prog.source.count("dd 0x001f0027") == guestgen.N_PD
    without = guestgen.compile_plan({**plan, "pge": False}).source
    assert without.count("dd 0x001f0007") == guestgen.N_PD      # set by the first walk


# --- every invalidation event, as the generator writes it ---------------------------------
def _stale_plan(how: str, kind: str = "read", pge: bool = False, g: int = 0) -> dict:
    """Map va 0x400000 -> frame0 read-only, read it, point the PTE at frame1
    (still read-only) with no INVLPG, then ``how`` and a ``kind`` access,
    then a read: the pattern of Intel SDM vol. 3A, 4.10.4.1's list."""
    gg = guestgen
    pdes = [[gg.PTS[0] | gg.P | gg.W | gg.U, 0, 0], [0, 0, 0], [0, 0, 0]]
    ptes = [[gg.DATA[0] | gg.P | g, 0, 0]] + [[0, 0, 0]] * (gg.N_PT - 1)
    return {"pge": pge, "wp": True, "timer": 0, "tlb": (64, 4, "split", 8),
            "pdes": pdes, "ptes": ptes,
            "ops": [("stale", 0, "pte", gg.DATA[1] | gg.P | g, True, kind, 0, "skip", how),
                    ("access", "read", 0, 0, "0x0", 0, 0, 0, "skip", "invlpg")]}


def _log_lines(result) -> list[str]:
    return result.console.splitlines()[:-1]          # the last line counts timer ticks


A_PATTERN = f"R {guestgen.pattern(guestgen.DATA[0], 0):#010x} 0x00000000"
B_PATTERN = f"R {guestgen.pattern(guestgen.DATA[1], 0):#010x} 0x00000000"


@pytest.mark.parametrize("how", ["invlpg", "cr3", "cr3-other", "pge", "pse", "wp", "pg"])
def test_each_invalidation_event_makes_the_stale_page_fresh_in_every_mode(how):
    prog = guestgen.compile_plan(_stale_plan(how))
    assert prog.events == {how: 1}, prog.events
    results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields())
    assert _log_lines(results[0][2]) == [A_PATTERN, B_PATTERN, B_PATTERN]
    assert not differences(results), "\n".join(differences(results))


def test_invlpg_elsewhere_freshens_a_page_stale_only_through_its_pde():
    # va 0x400000's PTE is not present, so nothing of it but its PDE can be
    # cached; the PDE now names pt1: INVLPG of any address empties the
    # paging-structure caches, and the read must find pt1's page.
    gg = guestgen
    plan = _stale_plan("invlpg-other")
    plan["ptes"][0][0] = 0
    plan["ptes"][1][0] = gg.DATA[1] | gg.P
    plan["ops"] = [("edit", 0, "pde", gg.PTS[1] | gg.P | gg.W | gg.U, "none"),
                   ("access", "read", 0, 0, "0x0", 0, 0, 0, "skip", "invlpg-other")]
    prog = gg.compile_plan(plan)
    assert prog.events == {"invlpg-other": 1}, prog.events
    assert "invlpg [0x003ff000]" in prog.source and "invlpg [0x00400000]" not in prog.source
    results = gg.run_everywhere(prog.source, prog.name, prog.config_fields())
    assert _log_lines(results[0][2]) == [B_PATTERN]
    assert not differences(results), "\n".join(differences(results))


def test_a_page_fault_on_the_stale_page_is_the_event_in_every_mode():
    # Was a bug: the #PF at va invalidates its TLB entries (SDM 4.10.4.1); under
    # the out-of-sync policies the shadow kept the old spte (0xaaaa twice).
    prog = guestgen.compile_plan(_stale_plan("pf", kind="write"))
    assert prog.events == {"pf": 1}, prog.events
    assert "invlpg" not in prog.source.split("op1c:")[1].split("jmp finish")[0]
    assert prog.expected_faults == [(0x400000, guestgen.PF_P | guestgen.PF_W)]
    results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields())
    assert _log_lines(results[0][2]) == [A_PATTERN, "F 0x00400000 0x00000003", B_PATTERN]
    assert not differences(results), "\n".join(differences(results))


def test_a_pge_toggle_flushes_non_global_stale_entries_in_every_mode():
    prog = guestgen.compile_plan(_stale_plan("pge", pge=True))
    assert prog.events == {"pge": 1}, prog.events
    results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields())
    assert _log_lines(results[0][2]) == [A_PATTERN, B_PATTERN, B_PATTERN]
    assert not differences(results), "\n".join(differences(results))


def test_a_global_stale_page_survives_a_cr3_load_so_invlpg_follows():
    prog = guestgen.compile_plan(_stale_plan("cr3", pge=True, g=guestgen.G))
    assert prog.events == {"invlpg": 1}, prog.events
    body = prog.source.split("op1c:")[0].split("op1b:")[1]
    assert "mov cr3, eax" in body and "invlpg [0x00400000]" in body


def test_no_page_fault_as_the_event_when_the_old_translation_allows_the_access():
    # The old entry lets every access through (writable, user): any access
    # could hit it in the TLB and succeed, so the generator invalidates
    # first (INVLPG) instead.
    plan = _stale_plan("pf", kind="write")
    plan["ptes"][0][0] |= guestgen.W | guestgen.U
    plan["ops"][0] = ("stale", 0, "pte", guestgen.DATA[1] | guestgen.P, False, "write", 0,
                      "skip", "pf")
    prog = guestgen.compile_plan(plan)
    assert "pf" not in prog.events and prog.events.get("invlpg") == 1, prog.events


def test_the_tlb_rules_of_the_model():
    from pagingmodel import Model, TlbRules
    gg = guestgen
    pages = {}
    model = Model(pages)
    model.write(gg.PDS[0] + 4, (gg.PTS[0] | gg.P | gg.W).to_bytes(4, "little"))
    model.write(gg.PTS[0], (gg.DATA[0] | gg.P).to_bytes(4, "little"))     # vpn 0x400
    rules = TlbRules(model, (0x400, 0x401))
    rules.before_write(gg.PDS[0], {gg.PTS[0] + 4})      # vpn 0x401's PTE: not present
    assert rules.stale == set()                         # nothing of it can be cached
    rules.before_write(gg.PDS[0], {gg.PTS[0]})
    assert rules.stale == {0x400} and rules.old[0x400] == {(gg.DATA[0] >> 12, False, False)}
    assert rules.sure_fault(gg.PDS[0], 0x400000, True, False, True) == 3   # RO: a write faults
    assert rules.sure_fault(gg.PDS[0], 0x400000, False, False, True) is None
    rules.before_write(gg.PDS[0], {gg.PDS[0] + 4})      # the PDE: both pages (PDE cache)
    assert rules.stale == {0x400, 0x401}
    rules.page_fault(0x400, gg.PDS[0], False)
    assert rules.stale == {0x401}
    rules.invlpg(-1, gg.PDS[0], False)                  # 0x401: only its PDE was cacheable
    assert rules.stale == set()
    rules.before_write(gg.PDS[0], {gg.PTS[0]})
    rules.load_cr3(gg.PDS[0], gg.PDS[0], False)
    assert rules.stale == set()


# --- bugs found by the properties above ---------------------------------------------
# Fixed ones stay as regression tests; open ones are strict xfails (they fail
# until fixed, then XPASS fails the suite: remove the mark).
WP0_READ_ONLY_PDE = """
    mov dword [0xA0000], 0x87         ; pde[0]: 4 MiB identity, P W U PS
    mov dword [0xA0004], 0xA1005      ; pde[1]: -> page table 0xA1000, P r U (read-only)
    mov dword [0xA1000], 0x400047     ; pte[0]: -> 0x400000, P W U D
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, 0xA0000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000                ; paging on, CR0.WP=0
    mov cr0, eax
    mov dword [0x400010], 0x1234      ; a supervisor write that WP=0 allows
    mov eax, [0x400010]
"""


def test_a_write_that_cr0_wp_0_allows_through_a_read_only_pde():
    # Was: the wp-emulate fill kept the gpde's R/W in the spde, the emulated
    # write faulted again and the VMM recursed until RecursionError.
    _, native = run_snippet(WP0_READ_ONLY_PDE, "native", mem_mib=8)
    assert native.outcome == "poweroff" and native.exit_status == 0x1234
    _, shadow = run_snippet(WP0_READ_ONLY_PDE, "shadow", mem_mib=8, check_invariants=True)
    assert shadow.guest_visible() == native.guest_visible()


def test_bus_error_counts_the_instructions_before_it():
    # Was: natively the BusError handler of Cpu.run set eip to the faulting
    # instruction but forgot the instructions its block retired before it.
    body = "    mov ebx, 7\n    mov ebx, [0x100000]\n"   # 1 MiB of RAM: pa 1 MiB is outside
    runs = {mode: run_snippet(body, mode, mem_mib=1)[1]
            for mode in ("native", "shadow", "nested")}
    for mode, r in runs.items():
        assert r.outcome == "crash" and "outside memory" in r.message, mode
        assert r.registers["eip"] == 0x100C, mode     # the faulting instruction
    # mov esp (harness) and mov ebx, 7 retired before the bus error
    assert [r.instructions for r in runs.values()] == [2, 2, 2]


SELF_PTE = PGTAB + (PGTAB >> 12) * 4        # the PTE that maps the page table itself
AD_CLEARED_WITHOUT_INVLPG = paging_on() + f"""
    mov dword [{PGTAB + 0x10:#x}], 1          ; a write through the table's own mapping: A, D set
    mov dword [{SELF_PTE:#x}], {PGTAB | 7:#x}      ; rewrite that PTE with A and D clear, no INVLPG
    mov dword [{PGTAB + 0x10:#x}], 2          ; a TLB hit natively: A and D stay clear
    mov eax, [{SELF_PTE:#x}]
"""


@pytest.mark.parametrize("policy", ["trace-cache", "trace-drop"])
def test_stale_tlb_write_to_a_traced_table_keeps_a_and_d_clear(policy):
    _, native = run_snippet(AD_CLEARED_WITHOUT_INVLPG, "native")
    assert native.exit_status == PGTAB | 7
    _, shadow = run_snippet(AD_CLEARED_WITHOUT_INVLPG, "shadow", shadow_policy=policy,
                            check_invariants=True)
    assert shadow.guest_visible() == native.guest_visible()


def test_stale_tlb_write_to_a_table_under_oos_and_nested_keeps_a_and_d_clear():
    _, native = run_snippet(AD_CLEARED_WITHOUT_INVLPG, "native")
    for mode, policy in (("shadow", "oos-cache"), ("shadow", "oos-drop"), ("nested", None)):
        _, r = run_snippet(AD_CLEARED_WITHOUT_INVLPG, mode,
                           shadow_policy=policy or "trace-cache", check_invariants=True)
        assert r.guest_visible() == native.guest_visible(), (mode, policy)


# --- the long run as a command ----------------------------------------------------------
def main(argv=None) -> int:
    import argparse
    import time
    ap = argparse.ArgumentParser(prog="python test_properties.py",
                                 description="Run the differential properties for longer "
                                             "and print the figures.")
    ap.add_argument("--kernels", "--examples", dest="kernels", type=int, default=500,
                    help="generated kernels per property (default 500)")
    ap.add_argument("--seed", type=int, default=None,
                    help="hypothesis seed (default: a fresh random one)")
    ap.add_argument("--only", choices=("generated", "garbage"), default=None)
    args = ap.parse_args(argv)
    if not 1 <= args.kernels <= 10**7:
        ap.error("--kernels must be 1 to 10,000,000")
    if args.seed is not None and not 0 <= args.seed < 2**64:
        ap.error("--seed must be 0 to 2**64 - 1")
    os.environ["EMU_HYPOTHESIS"] = "long"
    os.environ["EMU_EXAMPLES"] = str(args.kernels)
    if args.seed is not None:
        os.environ["EMU_SEED"] = str(args.seed)
    # a fresh copy of this module, decorated with the long profile
    import test_properties as tp
    t0 = time.perf_counter()
    tp.FIGURES["started"] = t0
    failed = []
    tests = {"generated": tp.test_generated_guests_agree_in_every_mode,
             "garbage": tp.test_garbage_page_tables_end_the_same_way_everywhere}
    for name, test in tests.items():
        if args.only in (None, name):
            try:
                test()
            except Exception as e:          # hypothesis has printed the example
                failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    f = tp.FIGURES
    events = ", ".join(f"{how} {n:,}" for how, n in sorted(f["events"].items(),
                                                          key=lambda kv: -kv[1]))
    print(f"generated kernels: {f['programs']:,} ({f['faults_predicted']:,} page faults "
          f"predicted by the model); garbage-table kernels: {f['garbage_programs']:,}")
    print(f"stale pages made fresh by an invalidation event: {sum(f['events'].values()):,} "
          f"({events or 'none'})")
    print(f"runs: {f['runs']:,} (native with {1 + len(guestgen.NATIVE_TLBS)} TLB shapes -- "
          f"garbage kernels with their own only --, 4 shadow policies, nested); "
          f"invariant checks: {f['invariant_checks']:,}")
    first = f["first_failure"]
    print(f"divergences: {len(failed)} (failing runs seen, shrinking included: "
          f"{f['failures']:,}" + (f"; the first at kernel {first[0]:,}, after {first[1]:.1f} s"
                                  if first else "") + ")")
    print(f"seconds: {time.perf_counter() - t0:.0f}")
    for line in failed:
        print("FAILED", line)
    return 1 if failed else 0


def test_the_long_run_refuses_a_bad_number_of_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--kernels", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python test_properties.py: error: --kernels must be 1 to 10,000,000")


if __name__ == "__main__":
    sys.exit(main())
