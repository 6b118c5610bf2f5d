"""The VMM's pieces, driven directly: machine memory, the PMap, guest-physical
memory seen through it, the shadow tables and the resource-control check.

Every test builds a small machine (64 machine pages) with one VM of 16 guest
pages, so mpns and ppns stay small and exact."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.hw.memory import BusError, PhysMem
from emu.hw.paging import PTE_A, PTE_D, PTE_G, PTE_P, PTE_PWT, PTE_U, PTE_W
from emu.hw.tlb import Tlb, TlbEntry
from emu.vmm.api import VmmError
from emu.vmm.invariants import InvariantError, check_shadow
from emu.vmm.pmap import (
    RESIDENT,
    SHARED_OWNER,
    SHARED_PAGE,
    UNBACKED,
    VMM_OWNER,
    GuestPhys,
    MachineMemory,
    OutOfMachineMemory,
    PMap,
)
from emu.vmm.shadow import _U32, SPTE_STALE, ShadowTables

PAGE = 4096
PWU = PTE_P | PTE_W | PTE_U


def machine(pages: int = 64, guest_pages: int = 16):
    m = MachineMemory(pages * PAGE)
    return m, PMap("vm0", guest_pages * PAGE, m)


def tables(policy: str = "trace-cache"):
    """(machine, pmap, shadow) with nothing allocated yet."""
    m, pm = machine()
    return m, pm, ShadowTables(m, pm, policy)


def poke(sp, idx: int, value: int) -> None:
    """Write a shadow entry behind the bookkeeping's back (the hardware does,
    for A/D; a buggy VMM would, for the rest)."""
    _U32.pack_into(sp.page, idx * 4, value)


# --- MachineMemory ---------------------------------------------------------------
def test_machine_memory_allocates_lazily():
    m, _ = machine()
    assert m.mem.pages == {} and m.owner == {}
    assert m.stats() == {"machine_pages": 64, "allocated": 0, "peak_allocated": 0,
                         "allocations": 0, "frees": 0}


def test_machine_memory_never_hands_out_mpn_0():
    m, _ = machine(pages=4)
    assert [m.alloc("vm0") for _ in range(3)] == [1, 2, 3]


def test_machine_memory_raises_when_full():
    m, _ = machine(pages=4)
    for _ in range(3):
        m.alloc("vm0")
    with pytest.raises(OutOfMachineMemory, match="machine memory exhausted .*3 pages in use"):
        m.alloc("vm0")


def test_machine_memory_page_is_zeroed_and_reused_after_free():
    m, _ = machine(pages=4)
    a, b = m.alloc("vm0"), m.alloc("vm0")
    m.mem.page(b)[100] = 0xAB
    freed = []
    m.on_free = lambda mpn, owner: freed.append((mpn, owner))
    m.free(b)
    assert freed == [(b, "vm0")] and b not in m.owner and b not in m.mem.pages
    assert m.alloc("vmm") == b
    assert m.mem.page(b) == bytes(PAGE)
    assert m.owner == {a: "vm0", b: "vmm"}


def test_machine_memory_counts_peak_allocations_and_frees():
    m, _ = machine()
    mpns = [m.alloc("vm0") for _ in range(5)]
    for mpn in mpns[:3]:
        m.free(mpn)
    m.alloc("vm0")
    assert m.stats() == {"machine_pages": 64, "allocated": 3, "peak_allocated": 5,
                         "allocations": 6, "frees": 3}


# --- PMap ------------------------------------------------------------------------
def test_pmap_backs_a_page_once():
    m, pm = machine()
    assert pm.state(3) == UNBACKED and pm.lookup(3) is None
    assert pm.back(3) == (1, True)
    assert pm.back(3) == (1, False)
    assert pm.state(3) == RESIDENT and pm.lookup(3) == 1
    assert pm.items() == [(3, 1)] and pm.ppn_of == {1: 3}
    assert m.owner == {1: "vm0"}
    assert pm.stats() == {"resident": 1, "shared": 0, "swapped": 0, "allocated": 1,
                          "lookups": 4}


def test_pmap_lookup_past_guest_ram_is_a_bus_error():
    _, pm = machine()
    pm.lookup(15)
    with pytest.raises(BusError, match="pa 0x00010000 is outside memory"):
        pm.lookup(16)
    with pytest.raises(BusError):
        pm.back(16)


def test_pmap_owns_only_its_pages():
    m, pm = machine()
    mine, _ = pm.back(0)
    other = m.alloc("vm1")
    vmm = m.alloc(VMM_OWNER)
    assert [pm.owns(mine), pm.owns(other), pm.owns(vmm), pm.owns(40)] == [
        True, False, False, False]


# --- GuestPhys -------------------------------------------------------------------
def test_guest_phys_reads_zeros_without_allocating():
    m, pm = machine()
    g = GuestPhys(pm)
    assert g.read32(0x5004) == 0
    assert g.read(0x4FFE, 8) == bytes(8)
    assert m.owner == {} and pm.mpn_of == {}


def test_guest_phys_writes_back_pages():
    m, pm = machine()
    g = GuestPhys(pm)
    written = []
    g.on_write = written.append
    g.write32(0x5004, 0xDEADBEEF)
    g.write(0x6FFE, b"abcd")                 # straddles ppns 6 and 7
    assert pm.items() == [(5, 1), (6, 2), (7, 3)]
    assert written == [1, 2, 3]
    assert g.read32(0x5004) == 0xDEADBEEF and g.read(0x6FFE, 4) == b"abcd"
    assert m.mem.page(1)[4:8] == (0xDEADBEEF).to_bytes(4, "little")


def test_guest_phys_past_guest_ram_is_a_bus_error():
    _, pm = machine()
    g = GuestPhys(pm)
    with pytest.raises(BusError):
        g.read32(16 * PAGE)
    with pytest.raises(BusError):
        g.write32(16 * PAGE, 1)


def test_guest_phys_sha256_equals_native_memory_with_same_contents():
    _, pm = machine()
    g = GuestPhys(pm)
    native = PhysMem(16 * PAGE)
    for mem in (g, native):
        mem.write(0x6FFE, b"abcd")
        mem.write32(0xF000, 0x12345678)
        mem.write32(0x1000, 0)              # backed, but all zeros
    assert g.sha256() == native.sha256()
    g.write32(0x2000, 1)
    assert g.sha256() != native.sha256()


# --- ShadowTables ----------------------------------------------------------------
def test_ensure_creates_a_zeroed_vmm_page_and_tracks_its_guest_table():
    m, _, st = tables()
    sp, created = st.ensure(("pt", 5))
    assert created and st.ensure(("pt", 5)) == (sp, False)
    assert m.owner[sp.mpn] == VMM_OWNER and sp.page == bytes(PAGE)
    assert st.pages == {("pt", 5): sp} and st.by_mpn == {sp.mpn: sp}
    assert st.tracked == {5: {("pt", 5)}} and st.is_protected(5)
    assert st.stats()["write_protected"] == 1


def test_ensure_write_protects_existing_mappings_of_the_guest_table():
    _, pm, st = tables()
    table_mpn, _ = pm.back(5)
    data, _ = st.ensure(("pt", 7))
    assert st.set_spte(data, 3, table_mpn, PWU | PTE_D, 5, True) == (
        table_mpn << 12) | PWU
    protected = []
    st.on_protect = lambda gppn, mpn: protected.append((gppn, mpn))
    st.ensure(("pt", 5))                     # ppn 5 becomes a shadowed table
    assert data.entry(3) == (table_mpn << 12) | PTE_P | PTE_U
    assert protected == [(5, table_mpn)]
    st.ensure(("pt", 9))                     # not resident: the TLB is told too
    assert protected == [(5, table_mpn), (9, None)]


def test_link_copies_the_gpdes_w_and_u():
    _, _, st = tables()
    pd, _ = st.ensure(("pd", 1))
    pt, _ = st.ensure(("pt", 2))
    st.link(pd, 4, pt, 0x2000 | PWU | PTE_A | PTE_PWT)
    assert pd.entry(4) == (pt.mpn << 12) | PWU
    assert pt.parents == {(pd, 4)} and pd.present == 1
    st.link(pd, 4, pt, 0x2000 | PTE_P)     # same table, fewer rights
    assert pd.entry(4) == (pt.mpn << 12) | PTE_P


def test_set_spte_takes_u_and_g_from_the_gpte_and_w_only_if_writable():
    _, pm, st = tables()
    pt, _ = st.ensure(("pt", 2))
    mpn, _ = pm.back(9)
    gpte = 0x9000 | PWU | PTE_A | PTE_D | PTE_G | PTE_PWT
    assert st.set_spte(pt, 0, mpn, gpte, 9, True) == (mpn << 12) | PWU | PTE_G
    assert st.set_spte(pt, 1, mpn, gpte, 9, False) == (mpn << 12) | PTE_P | PTE_U | PTE_G
    assert st.set_spte(pt, 2, mpn, 0x9000 | PTE_P | PTE_W, 9, True) == (mpn << 12) | PTE_P | PTE_W
    assert [pt.entry(i) for i in range(3)] == [(mpn << 12) | PWU | PTE_G,
                                               (mpn << 12) | PTE_P | PTE_U | PTE_G,
                                               (mpn << 12) | PTE_P | PTE_W]


def test_set_spte_never_makes_a_protected_guest_table_writable_unless_forced():
    _, pm, st = tables()
    pt, _ = st.ensure(("pt", 2))
    mpn, _ = pm.back(2)                      # the guest table itself
    assert st.set_spte(pt, 0, mpn, 0x2000 | PWU | PTE_D, 2, True) == (mpn << 12) | PTE_P | PTE_U
    assert st.set_spte(pt, 0, mpn, 0x2000 | PWU | PTE_D, 2, True, force=True) == (
        mpn << 12) | PWU


def test_relinking_an_accessed_spde_keeps_its_4m_child():
    # Regression: the hardware's A bit made link() see a different entry,
    # clear it, and free the 4m child that was private to it.
    _, _, st = tables()
    pd, _ = st.ensure(("pd", 1))
    big, _ = st.ensure(("4m", 1, 3))
    gpde = 0x400000 | PWU | 0x80
    st.link(pd, 3, big, gpde)
    poke(pd, 3, pd.entry(3) | PTE_A)          # the hardware walked through it
    st.link(pd, 3, big, gpde)
    assert st.pages.get(("4m", 1, 3)) is big
    assert pd.entry(3) == (big.mpn << 12) | PWU | PTE_A
    st.link(pd, 3, big, gpde & ~PTE_W)        # new rights, same table
    assert st.pages.get(("4m", 1, 3)) is big and big.parents == {(pd, 3)}
    assert pd.entry(3) == (big.mpn << 12) | PTE_P | PTE_U


def test_relinking_an_spde_to_another_table_frees_its_private_4m_child():
    _, _, st = tables()
    pd, _ = st.ensure(("pd", 1))
    big, _ = st.ensure(("4m", 1, 3))
    pt, _ = st.ensure(("pt", 6))
    st.link(pd, 3, big, 0x400000 | PWU | 0x80)
    st.link(pd, 3, pt, 0x6000 | PWU)
    assert ("4m", 1, 3) not in st.pages
    assert pd.entry(3) == (pt.mpn << 12) | PWU


def test_reverse_map_tracks_exactly_the_present_sptes():
    _, pm, st = tables()
    a, _ = st.ensure(("pt", 2))
    b, _ = st.ensure(("pt", 3))
    x, _ = pm.back(9)
    y, _ = pm.back(10)
    st.set_spte(a, 0, x, PWU, 9, True)
    st.set_spte(a, 1, x, PWU, 9, True)
    st.set_spte(b, 5, x, PWU, 9, True)
    st.set_spte(b, 6, y, PWU, 10, True)
    assert st.sptes_mapping(x) == sorted([(a, 0), (a, 1), (b, 5)],
                                         key=lambda r: (r[0].mpn, r[1]))
    st.set_spte(a, 1, y, PWU, 10, True)      # remapped: x loses it, y gains it
    st._clear(b, 5)
    assert st.rmap == {x: {(a, 0)}, y: {(b, 6), (a, 1)}}
    assert st.drop_mappings(y) == 2
    assert st.rmap == {x: {(a, 0)}} and a.entry(1) == 0 and b.entry(6) == 0


def test_sync_entries_drops_exactly_the_changed_entries():
    _, pm, st = tables()
    pt, _ = st.ensure(("pt", 2))
    mpn, _ = pm.back(9)
    for idx in (1, 2, 3):
        st.set_spte(pt, idx, mpn, PWU, 9, True)
    assert st.sync_entries(2, [1, 3, 7]) == 2       # entry 7 was never present
    assert [pt.entry(i) for i in (1, 2, 3)] == [0, (mpn << 12) | PWU, 0]
    assert st.rmap == {mpn: {(pt, 2)}} and st.stats()["sptes_dropped"] == 2
    assert st.sync_entries(4, [2]) == 0             # ppn 4 is no shadowed table


def test_drop_all_frees_every_shadow_page():
    m, pm, st = tables()
    pd, _ = st.ensure(("pd", 1))
    pt, _ = st.ensure(("pt", 2))
    big, _ = st.ensure(("4m", 1, 5))
    mpn, _ = pm.back(9)
    st.link(pd, 0, pt, PWU)
    st.link(pd, 5, big, PWU)
    st.set_spte(pt, 0, mpn, PWU, 9, True)
    st.set_spte(big, 0, mpn, PWU, 9, True)
    assert st.drop_all() == 3
    assert st.pages == {} and st.by_mpn == {} and st.tracked == {} and st.rmap == {}
    assert m.owner == {mpn: "vm0"}
    assert st.stats()["drops_all"] == 1 and st.stats()["shadow_pages_peak"] == 3


def test_shrink_frees_the_unreached_oldest_first_and_keeps_roots_and_stale_records():
    m, pm, st = tables()
    active, _ = st.ensure(("pd", 1))          # the root the hardware walks
    other, _ = st.ensure(("pd", 3))           # another address space's root
    used, _ = st.ensure(("pt", 2))            # reached from the active root
    idle, _ = st.ensure(("pt", 4))            # reached from the other root only
    stale, _ = st.ensure(("pt", 6))           # holds a stale record
    mpn, _ = pm.back(9)
    st.link(active, 0, used, PWU)
    st.link(other, 0, idle, PWU)
    st.set_spte(used, 0, mpn, PWU, 9, True)
    st.keep_stale(stale, 5, (9 << 12) | SPTE_STALE | PTE_W, [5])
    assert st.shrink({active}, lambda: False) == 3
    assert set(st.pages) == {("pd", 1), ("pt", 6)}
    assert active.entry(0) == 0 and not st.is_protected(2) and st.is_protected(1)
    assert st.rmap == {} and st.stats()["shrunk"] == 3
    # ``enough`` stops it: the unreached before the reached, oldest first
    _, pm, st = tables()
    active, _ = st.ensure(("pd", 1))
    used, _ = st.ensure(("pt", 2))
    old, _ = st.ensure(("pd", 3))
    young, _ = st.ensure(("pd", 5))
    st.link(active, 0, used, PWU)
    freed = []
    assert st.shrink({active}, lambda: len(freed) == 2 or freed.append(0)) == 2
    assert set(st.pages) == {("pd", 1), ("pt", 2)}
    assert st.shrink({active}, lambda: False) == 1 and set(st.pages) == {("pd", 1)}


def test_oos_unsync_unprotects_and_resync_zaps_and_protects_again():
    _, pm, st = tables("oos-cache")
    table_mpn, _ = pm.back(2)
    pt, _ = st.ensure(("pt", 2))
    data, _ = st.ensure(("pt", 3))
    other, _ = pm.back(9)
    st.set_spte(pt, 0, other, PWU, 9, True)
    st.set_spte(pt, 1, other, PWU, 9, True)
    # Out of sync, the guest may rewrite the table unseen: what was built
    # from it goes (the TLB keeps what it holds; the rest refills on demand).
    assert st.mark_unsync(2) == 2
    assert pt.entry(0) == pt.entry(1) == 0
    assert not st.is_protected(2)
    assert st.set_spte(data, 4, table_mpn, PWU, 2, True) == (table_mpn << 12) | PWU
    st.set_spte(pt, 1, other, PWU, 9, True)  # refilled while out of sync
    assert st.resync() == 1                  # pt's refilled entry
    assert pt.entry(0) == pt.entry(1) == 0 and st.unsync == set()
    assert st.is_protected(2)
    assert data.entry(4) == (table_mpn << 12) | PTE_P | PTE_U
    assert st.stats()["unsynced"] == 1 and st.stats()["resyncs"] == 1


def test_drop_va_drops_the_spte_and_the_spde_above_it():
    # INVLPG invalidates the cached directory entry too (SDM 4.10.4.1): the
    # spde is dropped (its table stays, shared), the va's spte with it.
    _, pm, st = tables("oos-cache")
    pd, _ = st.ensure(("pd", 1))
    pt, _ = st.ensure(("pt", 2))
    mpn, _ = pm.back(9)
    st.link(pd, 1, pt, PWU)
    st.set_spte(pt, 0x80, mpn, PWU, 9, True)
    st.set_spte(pt, 0x81, mpn, PWU, 9, True)
    assert st.drop_va(pd, 0x480123) == 2
    assert pt.entry(0x80) == 0 and pt.entry(0x81) == (mpn << 12) | PWU
    assert pd.entry(1) == 0 and ("pt", 2) in st.pages
    assert st.drop_va(pd, 0x480123) == 0      # already gone
    assert st.drop_va(pd, 0x800000) == 0      # no spde there
    assert st.rmap == {mpn: {(pt, 0x81)}}


def test_drop_va_in_a_4m_page_frees_its_whole_shadow():
    # INVLPG of one va of a guest 4 MiB page invalidates all of it
    _, pm, st = tables("oos-cache")
    pd, _ = st.ensure(("pd", 1))
    big, _ = st.ensure(("4m", 1, 1))
    mpn, _ = pm.back(9)
    st.link(pd, 1, big, 0x400000 | PWU | 0x80)
    st.set_spte(big, 0, mpn, PWU, 9, True)
    st.set_spte(big, 5, mpn, PWU, 9, True)
    assert st.drop_va(pd, 0x400000) == 3       # two sptes and the spde
    assert ("4m", 1, 1) not in st.pages and pd.entry(1) == 0 and st.rmap == {}


# --- check_shadow --------------------------------------------------------------------
def vm(policy: str = "trace-cache"):
    """A small clean VM: root pd(1) -> pt(2), two sptes; and its 'monitor'."""
    m, pm, st = tables(policy)
    pd, _ = st.ensure(("pd", 1))
    pt, _ = st.ensure(("pt", 2))
    st.link(pd, 0, pt, PWU)
    for idx, ppn in ((3, 9), (4, 2)):        # entry 4 maps the guest table ppn 2
        mpn, _ = pm.back(ppn)
        st.set_spte(pt, idx, mpn, PWU | PTE_D, ppn, True)
    tlbs = SimpleNamespace(itlb=Tlb(name="itlb"), dtlb=Tlb(name="dtlb"))
    return SimpleNamespace(shadow=st, pmap=pm, machine=m, mmu=tlbs), pd, pt


def test_check_shadow_catches_a_tlb_entry_that_writes_a_protected_table():
    """A TLB entry may not write a shadowed guest table in sync either:
    one to its machine page, or one the host detached from it (the CLOCK
    hand testing its A bit), which gets its rights back when reattached."""
    mon, _, _ = vm()
    table = mon.pmap.mpn_of[2]
    check_shadow(mon)
    mon.mmu.dtlb.insert(TlbEntry(0x40, 0x777, None, False, True, True, False, gpn=2))
    check_shadow(mon)                        # read-only, detached: fine
    mon.mmu.dtlb.insert(TlbEntry(0x40, -1, None, True, True, True, False, gpn=2))
    with pytest.raises(InvariantError, match=r"dtlb entry for va 0x00040000 lets the guest "
                       r"write its page table at ppn 0x2 \(detached from its page\)"):
        check_shadow(mon)
    mon.mmu.dtlb.invlpg(0x40)
    mon.mmu.itlb.insert(TlbEntry(0x41, table, None, True, True, True, False))
    with pytest.raises(InvariantError, match=r"itlb entry for va 0x00041000 lets the guest "
                       r"write its page table at ppn 0x2$"):
        check_shadow(mon)


def test_check_shadow_passes_on_a_clean_vm():
    mon, _, _ = vm()
    assert check_shadow(mon) == 3
    assert mon.invariant_checks == 1


def test_set_spte_refuses_a_page_the_vm_may_not_reach():
    """The VMM API refuses at once what the invariant would find later."""
    mon, pd, pt = vm()
    foreign = mon.machine.alloc("vm1")
    with pytest.raises(VmmError, match=r"^isolation: spte maps mpn 0x5, which is a page the "
                                       r"PMap gives to vm1$"):
        mon.shadow.set_spte(pt, 8, foreign, PWU, 40, False)
    with pytest.raises(VmmError, match=r"^isolation: spte maps mpn 0x1, which is a page of "
                                       r"the VMM's own tables$"):
        mon.shadow.set_spte(pt, 7, pd.mpn, PWU, 1, False)
    with pytest.raises(VmmError, match=r"^isolation: spte maps mpn 0x30, which is a free page$"):
        mon.shadow.set_spte(pt, 7, 0x30, PWU, 1, False)


def test_check_shadow_catches_an_spte_mapping_a_shadow_page():
    mon, pd, pt = vm()
    poke(pt, 7, (pd.mpn << 12) | PWU)             # behind the API's back
    with pytest.raises(InvariantError, match=r"spte \('pt', 2\)\[7\] = .* maps a shadow page"):
        check_shadow(mon)


def test_check_shadow_catches_an_spte_mapping_another_owners_page():
    mon, _, pt = vm()
    foreign = mon.machine.alloc("vm1")
    poke(pt, 8, (foreign << 12) | PWU)
    with pytest.raises(InvariantError,
                       match=r"spte \('pt', 2\)\[8\] .* owned by vm1, not a page of vm0"):
        check_shadow(mon)


def test_check_shadow_catches_an_spde_pointing_to_a_non_table():
    mon, pd, _ = vm()
    poke(pd, 9, (mon.pmap.mpn_of[9] << 12) | PWU)
    with pytest.raises(InvariantError,
                       match=r"spde \('pd', 1\)\[9\] = .* does not point to a shadow page table"):
        check_shadow(mon)


def test_check_shadow_catches_a_writable_protected_guest_table_under_tracing():
    mon, _, pt = vm()
    poke(pt, 4, pt.entry(4) | PTE_W)
    with pytest.raises(InvariantError,
                       match=r"spte \('pt', 2\)\[4\] lets the guest write its page table "
                             r"at ppn 0x2"):
        check_shadow(mon)


def test_check_shadow_allows_a_writable_unsynced_table_under_oos():
    mon, _, pt = vm("oos-cache")
    mon.shadow.mark_unsync(2)                # (pt, the shadow of ppn 2, is emptied)
    table = mon.pmap.mpn_of[2]
    assert mon.shadow.set_spte(pt, 4, table, PWU | PTE_D, 2, True) & PTE_W   # a refill
    assert check_shadow(mon) == 2


def test_check_shadow_catches_a_writable_shared_page_with_no_table_protected():
    """A shared page is never writable, whether or not a guest table is
    write-protected at the time (oos: the only table is out of sync)."""
    mon, _, pt = vm("oos-cache")
    mon.shadow.mark_unsync(2)                # (pt, the shadow of ppn 2, is emptied)
    m, pm = mon.machine, mon.pmap
    shared = m.alloc(SHARED_OWNER, SHARED_PAGE)
    pm.bind_shared(12, shared)
    mon.shadow.set_spte(pt, 6, shared, PTE_P | PTE_U, 12, False)
    assert check_shadow(mon) == 2
    poke(pt, 6, pt.entry(6) | PTE_W)
    with pytest.raises(InvariantError, match=rf"spte \('pt', 2\)\[6\] lets the guest write "
                                             rf"the shared page mpn {shared:#x}"):
        check_shadow(mon)


def test_check_shadow_catches_a_reverse_map_with_a_reference_too_many():
    mon, _, pt = vm()
    mpn = mon.pmap.mpn_of[9]
    mon.shadow.rmap[mpn].add((pt, 11))          # no spte 11 maps it
    with pytest.raises(InvariantError, match=rf"reverse map of mpn {mpn:#x} is stale"):
        check_shadow(mon)


def test_check_shadow_catches_a_stale_reverse_map():
    mon, _, pt = vm()
    poke(pt, 3, 0)                           # dropped behind the reverse map's back
    mpn = mon.pmap.mpn_of[9]
    with pytest.raises(InvariantError, match=rf"reverse map of mpn {mpn:#x} is stale"):
        check_shadow(mon)


@settings(max_examples=300, deadline=None)
@given(st.none() | st.integers(0, 2**32),
       st.lists(st.tuples(st.integers(0, 4095), st.integers(1, 255)), max_size=40))
def test_the_changed_dwords_of_an_emulated_write_are_those_numpy_finds(seed, flips):
    import random

    import numpy as np

    from emu.vmm.emulate import _changed_dwords
    page = bytes(4096) if seed is None else random.Random(seed).randbytes(4096)
    after = bytearray(page)
    for at, bits in flips:
        after[at] ^= bits
    a, b = np.frombuffer(page, "<u4"), np.frombuffer(bytes(after), "<u4")
    assert _changed_dwords(page, bytes(after)) == np.flatnonzero(a != b).tolist()
