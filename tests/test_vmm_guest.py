"""The shadow-paging VMM running whole guests: demand.s under each policy, and
small inline kernels where a count or an entry must be exact.

Every run under shadow checks the resource-control invariant after every VM
exit (``check_invariants=True``) and asserts that it did.

The inline kernels are ``TEMPLATE`` with a body: a ring-0 kernel at 0x1000,
stack at 0x80000, ``lib.inc``'s routines (puts, print_hex ...), and a trap
handler that powers off with 100 + the vector.  ``IDMAP`` identity-maps
0-4 MiB with 4 KiB pages (PD at 0x100000, PT at 0x101000, P W U) and turns
paging on with CR0.WP."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from emu.asm import assemble
from emu.cli import load
from emu.errors import ImageError
from emu.hw.paging import PTE_A, PTE_D, PTE_P, PTE_U, PTE_W
from emu.programs import include_dir
from emu.system import Config, System
from emu.trace import TraceBus
from emu.ui.narrate import Narrator
from emu.vmm.shadow import POLICIES

PGDIR, PGTAB = 0x100000, 0x101000
MODES = [("native", None)] + [("shadow", p) for p in POLICIES]
MODE_IDS = ["native"] + list(POLICIES)

TEMPLATE = """%include "kernel.inc"
KSTACK_TOP equ 0x80000
PGDIR equ 0x100000
PGTAB equ 0x101000
org 0x1000
_start:
    mov esp, KSTACK_TOP
{body}
    mov eax, 0
    call poweroff
trap:
    mov eax, [eax + TF_VEC]
    add eax, 100
    call poweroff
msg: db "before", 10, 0
%include "lib.inc"
"""

IDMAP = """
    mov edi, PGDIR
    mov ecx, 2 * PAGE_SIZE
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W | PTE_U
    mov ecx, 0
.idmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W | PTE_U
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .idmap
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
"""


def kernel(body: str):
    return assemble(TEMPLATE.format(body=body), "<kernel>", include_dirs=[str(include_dir())])


def run(image, mode: str = "shadow", policy: str | None = None, bus: TraceBus | None = None,
        **config):
    """(system, result); under shadow, the invariant was checked after every exit."""
    cfg = Config(mode=mode, shadow_policy=policy or "trace-cache",
                 check_invariants=mode == "shadow", **config)
    s = System(image, cfg, bus)
    r = s.run()
    if mode == "shadow" and r.outcome != "crash":
        assert s.vmm.invariant_checks == r.stats["vmm"]["exits_total"] > 0
    return s, r


def record(kinds=None) -> tuple[TraceBus, list]:
    bus, events = TraceBus(), []
    bus.subscribe(events.append, kinds)
    return bus, events


_demand: dict = {}


def demand(policy: str | None):
    """demand.s natively (None) or under ``policy``: (system, result), run once."""
    if policy not in _demand:
        _demand[policy] = run(load("demand"), "shadow" if policy else "native", policy)
    return _demand[policy]


# --- demand.s: fault and exit counts -----------------------------------------------
# (oos: the sptes built from a table go when it goes out of sync; two of them
# are used again.)
HIDDEN = {"trace-cache": 38, "trace-drop": 59, "oos-cache": 52, "oos-drop": 61}


@pytest.mark.parametrize("policy", POLICIES)
def test_demand_faults_by_kind(policy):
    # 12 page-ins + 1 segfault are true faults; the handler writes 12 PTEs and
    # munmap clears 2: 14 tracing faults under trace-*; under oos-* the first
    # write to a table in each of the 4 time slices unsyncs it instead.  One
    # page is read before it is written: one dirty fault.
    trace = policy.startswith("trace")
    _, r = demand(policy)
    assert r.stats["vmm"]["faults"] == {
        "true": 13, "hidden": HIDDEN[policy], "dirty": 1, "tracing": 14 if trace else 0,
        "unsync": 0 if trace else 4, "wp-emulate": 0, "cow": 0}
    assert r.stats["vmm"]["emulated"] == (14 if trace else 0)
    assert r.stats["vmm"]["injected"] == 13


@pytest.mark.parametrize("policy", POLICIES)
def test_demand_exits_by_reason(policy):
    _, r = demand(policy)
    v = r.stats["vmm"]
    assert v["exits"] == {"cr0_write": 1, "cr3_write": 4, "invlpg": 2, "io": 1059,
                          "pf": sum(v["faults"].values())}


def test_demand_counts_agree_with_the_program():
    _, native = demand(None)
    _, r = demand("trace-cache")
    v = r.stats["vmm"]
    assert r.guest_visible() == native.guest_visible()
    # every true fault is one the guest's handler sees natively
    assert r.console.count(" page-in ") == 12 and r.console.count(" segfault ") == 1
    assert v["faults"]["true"] == 12 + 1 == native.stats["cpu"]["exceptions"]["14"]
    # mov cr3 runs once at boot and at each of the 3 switches (yield, yield,
    # exit); the last process is killed with nobody left to switch to
    assert v["exits"]["cr3_write"] == 1 + 3
    assert v["exits"]["invlpg"] == 2 == native.stats["mmu"]["dtlb"]["invlpg"]
    # one port write per console byte, and one to power off
    assert v["exits"]["io"] == len(r.console) + 1


def test_drop_policy_refaults_what_cache_keeps():
    cache, drop = demand("trace-cache")[1], demand("trace-drop")[1]
    assert drop.stats["vmm"]["faults"]["hidden"] > cache.stats["vmm"]["faults"]["hidden"]
    assert drop.stats["vmm"]["shadow"]["drops_all"] == 4
    assert cache.stats["vmm"]["shadow"]["drops_all"] == 0
    assert cache.stats["vmm"]["shadow"]["shadow_pages_created"] == 7
    assert drop.stats["vmm"]["shadow"]["shadow_pages_created"] == 19


def test_narration_of_demand_tells_every_kind_and_the_six_steps():
    out = []
    bus = TraceBus()
    bus.subscribe(Narrator(out.append, "shadow"))
    _, r = run(load("demand"), "shadow", "trace-cache", bus)
    assert r.outcome == "poweroff"
    text = "".join(out)
    for words in ("true fault", "hidden fault", "tracing fault"):
        assert words in text
    for step in range(1, 7):
        assert re.search(rf"^ {step} ", text, re.M), step


# --- CR3 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,policy", MODES, ids=MODE_IDS)
def test_guest_reads_back_the_cr3_it_wrote(mode, policy):
    # paging off, then on: the guest sees its own CR3, never the shadow root
    show = """
    mov cr3, eax
    mov ebx, cr3
    call print_hex
    mov al, ' '
    call putc
    mov eax, ebx
    call print_hex
    call newline
"""
    body = "    mov eax, 0x00ABC018\n" + show + IDMAP + "    mov eax, PGDIR | 0x18\n" + show
    s, r = run(kernel(body), mode, policy)
    assert r.console == "0x00abc018 0x00abc018\n0x00100018 0x00100018\n"
    assert r.registers["cr3"] == 0x00100018
    if mode == "shadow":
        assert r.stats["vmm"]["exits"]["cr3_read"] == 2
        assert s.mmu.cr3 == s.vmm.root.mpn << 12 != PGDIR


# --- writes to the guest's page tables ---------------------------------------------------
RETARGET = IDMAP + """
    mov dword [0x200000], 0x22
    mov dword [0x300000], 0x33
    mov eax, [0x200000]
    mov dword [PGTAB + 0x200*4], 0x300000 | PTE_P | PTE_W | PTE_U
    invlpg [0x200000]
    mov eax, [0x200000]
    call print_hex
"""


def test_write_to_a_guest_page_table_is_a_tracing_fault_that_drops_the_spte():
    bus, events = record({"tracing_fault", "emulate", "invlpg"})
    s, r = run(kernel(RETARGET), "shadow", "trace-cache", bus)
    assert r.console == "0x00000033"
    assert r.stats["vmm"]["faults"]["tracing"] == 1
    pte_va = PGTAB + 0x200 * 4
    assert [(e.kind, e.va, e.step) for e in events] == [
        ("tracing_fault", pte_va, 3), ("emulate", pte_va, 4), ("invlpg", 0x200000, None)]
    assert events[1].data == {"ppn": 0x101, "changed": [0x200], "dropped": 1,
                              "fault": "tracing"}
    assert events[2].data == {"dropped": 0}     # tracing already dropped it
    pt = s.vmm.shadow.get(("pt", 0x101))
    assert pt.entry(0x200) >> 12 == s.pmap.mpn_of[0x300]


def test_under_oos_the_write_unsyncs_and_invlpg_drops_the_spte():
    bus, events = record({"unsync_fault", "invlpg"})
    _, r = run(kernel(RETARGET), "shadow", "oos-cache", bus)
    assert r.console == "0x00000033"
    assert [(e.kind, e.data.get("dropped")) for e in events] == [
        ("unsync_fault", None), ("invlpg", 1)]    # the spte went at the unsync, the spde now


@pytest.mark.parametrize("mode,policy", MODES, ids=MODE_IDS)
def test_accessed_and_dirty_bits_are_exact(mode, policy):
    # read page 0x200, write 0x201, read then write 0x202, leave 0x203; print
    # their PTEs and the PDE (the guest reads its own table)
    body = IDMAP + """
    mov eax, [0x200000]
    mov dword [0x201000], 1
    mov eax, [0x202000]
    mov dword [0x202004], 2
    mov ecx, 0
.pte:
    mov eax, [PGTAB + 0x200*4 + ecx*4]
    call print_hex
    call newline
    inc ecx
    cmp ecx, 4
    jne .pte
    mov eax, [PGDIR]
    call print_hex
    call newline
"""
    s, r = run(kernel(body), mode, policy)
    assert r.console == ("0x00200027\n0x00201067\n0x00202067\n0x00203007\n"
                         "0x00101027\n")
    ptes = [int.from_bytes(s.guest_read(PGTAB + 0x200 * 4 + 4 * i, 4), "little")
            for i in range(4)]
    assert ptes == [0x200027, 0x201067, 0x202067, 0x203007]
    if mode == "shadow":
        assert r.stats["vmm"]["faults"]["dirty"] == 1       # page 0x202's first write


# --- 4 MiB pages and paging off -----------------------------------------------------------
BIG = """
    mov dword [0x401000], 0x41
    mov dword [0x801000], 0x81
    mov edi, PGDIR
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [PGDIR], 0 | PTE_P | PTE_W | PTE_PS
    mov dword [PGDIR + 4], 0x400000 | PTE_P | PTE_W | PTE_PS
    mov eax, cr4
    or eax, CR4_PSE
    mov cr4, eax
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov eax, [0x400000]
    mov eax, [0x401000]
    mov eax, [0x402000]
"""


def test_a_4m_guest_page_is_shadowed_by_4k_sptes():
    s, r = run(kernel(BIG), "shadow")
    assert r.outcome == "poweroff"
    st = s.vmm.shadow
    assert sorted(k for k in st.pages if k[0] == "4m") == [("4m", 0x100, 0), ("4m", 0x100, 1)]
    big = st.get(("4m", 0x100, 1))
    root = st.get(("pd", 0x100))
    assert root.entry(1) & 0xFFF == PTE_P | PTE_W | PTE_A     # no PS: a table; A set
    assert root.entry(1) >> 12 == big.mpn
    assert big.present == 3
    # read-only (D clear in the gpde); the hardware set A walking the shadow
    assert [big.entry(i) for i in range(3)] == [
        (s.pmap.mpn_of[0x400 + i] << 12) | PTE_P | PTE_A for i in range(3)]


@pytest.mark.parametrize("mode,policy", MODES, ids=MODE_IDS)
def test_invlpg_of_one_va_invalidates_the_whole_4m_page(mode, policy):
    # Regression: under oos INVLPG dropped one 4 KiB spte and left the rest of
    # the guest's 4 MiB page mapped to the old frame.
    body = BIG + """
    mov dword [PGDIR + 4], 0x800000 | PTE_P | PTE_W | PTE_PS
    invlpg [0x400000]
    mov eax, [0x401000]
    call print_hex
"""
    _, r = run(kernel(body), mode, policy)
    assert r.console == "0x00000081"


@pytest.mark.parametrize("mode,policy", [
    (m, p) for m, p in MODES], ids=MODE_IDS)
def test_invlpg_after_a_pde_change_shows_the_new_page_table(mode, policy):
    # INVLPG invalidates every paging-structure cache entry whatever its va
    # (SDM 4.10.4.1), and 0x401000 is in no TLB after the CR3 reload: the
    # read must walk through the new table.
    body = IDMAP + """
    mov dword [0x102000 + 4], 0x300000 | PTE_P | PTE_W
    mov dword [0x103000 + 4], 0x301000 | PTE_P | PTE_W
    mov dword [0x300000], 0x33
    mov dword [0x301000], 0x34
    mov dword [PGDIR + 4], 0x102000 | PTE_P | PTE_W
    mov eax, cr3
    mov cr3, eax
    mov eax, [0x401000]
    mov eax, cr3
    mov cr3, eax
    mov dword [PGDIR + 4], 0x103000 | PTE_P | PTE_W
    invlpg [0x400000]
    mov eax, [0x401000]
    call print_hex
"""
    _, r = run(kernel(body), mode, policy)
    assert r.console == "0x00000034"


def test_paging_off_runs_on_the_physical_mode_shadow():
    bus, events = record({"guest_walk", "hidden_fault"})
    s, r = run(kernel("    mov dword [0x500000], 5\n    mov eax, [0x500000]\n"), "shadow", bus=bus)
    assert r.exit_status == 0
    st = s.vmm.shadow
    assert sorted(st.pages) == [("phys-pd", 0), ("phys-pt", 0), ("phys-pt", 1)]
    assert s.vmm.root is st.get(("phys-pd", 0)) and s.mmu.cr3 == s.vmm.root.mpn << 12
    spte = st.get(("phys-pt", 1)).entry(0x100) & ~(PTE_A | PTE_D)   # the hardware's
    assert spte == (s.pmap.mpn_of[0x500] << 12) | PTE_P | PTE_W | PTE_U
    assert [e.kind for e in events] == ["hidden_fault"] * r.stats["vmm"]["faults"]["hidden"]


# --- the six steps in the trace -----------------------------------------------------------
def test_trace_of_one_hidden_fault_is_the_six_steps_in_order():
    bus, events = record()
    s, _ = run(kernel(IDMAP + "    mov eax, [0x200000]\n"), "shadow", bus=bus)
    first = next(i for i, e in enumerate(events)
                 if e.kind == "shadow_walk" and e.step == 1 and e.va == 0x200000)
    last = next(i for i, e in enumerate(events) if e.kind == "tlb_fill" and i > first)
    story = [(e.kind, e.step) for e in events[first:last + 1] if e.step is not None]
    assert story == [("shadow_walk", 1), ("vm_exit", 2), ("guest_walk", 2),
                     ("hidden_fault", 3), ("pmap_lookup", 3), ("shadow_fill", 4),
                     ("vm_entry", 5), ("shadow_walk", 6), ("tlb_fill", 6)]
    fill = next(e for e in events[first:last] if e.kind == "shadow_fill")
    mpn = s.pmap.mpn_of[0x200]
    assert fill.data["mpn"] == mpn and fill.data["spte"] == (mpn << 12) | PTE_P | PTE_U
    assert events[last].va == 0x200000 and events[last].data["pn"] == mpn


# --- machines and guests that go wrong -----------------------------------------------------
def test_machine_memory_smaller_than_the_working_set_swaps_to_the_same_result():
    body = """
    mov esi, msg
    call puts
    mov ecx, 0
.touch:
    mov eax, ecx
    shl eax, 12
    mov dword [0x100000 + eax], 1
    inc ecx
    cmp ecx, 512
    jne .touch
"""
    # 512 pages touched, 255 machine pages: the host reclaims (CLOCK over the
    # sptes' A bits) and swaps; the guest cannot tell.
    s, r = run(kernel(body), "shadow", machine_mib=1)
    _, native = run(kernel(body), "native")
    assert r.outcome == "poweroff" and r.console == "before\n"
    assert r.guest_visible() == native.guest_visible()
    host = r.stats["host"]
    assert host["reclaimed"] > 256 and host["swap_outs"] > 0
    assert host["machine"]["peak_allocated"] <= 255


BAD_TABLES = {
    "pde": IDMAP + """
    mov esi, msg
    call puts
    mov dword [PGDIR + 2*4], 0x2000000 | PTE_P | PTE_W
    mov eax, [0x800000]
""",
    "pte": IDMAP + """
    mov esi, msg
    call puts
    mov dword [PGTAB + 0x200*4], 0x3000000 | PTE_P | PTE_W
    invlpg [0x200000]
    mov eax, [0x200123]
""",
    "cr3": """
    mov esi, msg
    call puts
    mov eax, 0x12345000
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    mov eax, 1
""",
}
BAD_PA = {"pde": "0x02000000", "pte": "0x03000000", "cr3": "0x12345000"}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_tables_outside_guest_ram_crash_the_same_way_natively_and_under_shadow(case, policy):
    image = kernel(BAD_TABLES[case])
    _, native = run(image, "native")
    _, r = run(image, "shadow", policy)
    assert native.outcome == r.outcome == "crash"
    assert r.message == native.message
    assert r.message.startswith(f"pa {BAD_PA[case]} is outside memory (16 MiB) (eip 0x")
    assert r.console == native.console == "before\n"
    assert r.registers == native.registers


def test_an_image_fitting_guest_ram_loads_whatever_the_machine_memory_size():
    # demand's user code sits at 4 MiB but it needs only 28 machine pages
    _, r = run(load("demand"), "shadow", machine_mib=4)
    assert r.outcome == "poweroff"


def test_an_image_past_guest_ram_is_an_image_error_under_shadow_too():
    small = kernel("")
    far = replace(small, segments=small.segments + ((0x200000, bytes(16)),))
    with pytest.raises(ImageError, match="do not fit in 1 MiB of guest RAM"):
        System(far, Config(mode="native", mem_mib=1))
    with pytest.raises(ImageError, match="do not fit in 1 MiB of guest RAM"):
        System(far, Config(mode="shadow", mem_mib=1))


def test_an_image_larger_than_machine_memory_is_swapped_while_it_loads():
    """All 256 pages of 1 MiB of guest RAM (non-zero) on a 1 MiB machine:
    the VMM's own writes take pages back as they go, the run swaps and
    ends as natively."""
    small = kernel("")
    full = replace(small, segments=((0, b"\x01" * 4096),) + small.segments
                   + ((0x2000, b"\x01" * (0x100000 - 0x2000)),))
    native = System(full, Config(mode="native", mem_mib=1)).run()
    r = System(full, Config(mode="shadow", mem_mib=1, machine_mib=1,
                            check_invariants=True)).run()
    assert r.guest_visible() == native.guest_visible()
    assert r.stats["host"]["swap_outs"] > 0 and r.stats["host"]["swap_ins"] > 0


def test_oos_invlpg_of_two_ptes_in_one_table_drops_both_stale_sptes():
    # Regression: INVLPG under oos returned early when the spde had already
    # been dropped by the previous INVLPG, leaving the va's spte in the cached
    # shadow table: 0xb0 0xa1 instead of 0xb0 0xb1.
    import pathlib

    from emu.asm import assemble_file
    from emu.programs import include_dir
    path = pathlib.Path(__file__).parent / "programs" / "oos_invlpg.s"
    image = assemble_file(path, include_dirs=[include_dir()])
    native = System(image, Config(mode="native")).run()
    assert native.console.split()[-2:] == ["0x000000b0", "0x000000b1"]
    for policy in POLICIES:
        r = System(image, Config(mode="shadow", shadow_policy=policy,
                                 check_invariants=True)).run()
        assert r.guest_visible() == native.guest_visible(), policy
