"""The IA-32 32-bit paging walker, one rule per test.

Layout used throughout (physical addresses):

    CR3 = 0x10000       page directory
    PT  = 0x11000       page table for PD slot 1
    VA  = 0x00403123    pdx 1, ptx 3, offset 0x123
    PDE at 0x10004, PTE at 0x1100c; the 4 KiB page at 0x800000

    VA4M = 0x00f56789   pdx 3, offset 0x356789; PDE at 0x1000c maps a 4 MiB
                        page at 0x800000, so pa 0xb56789, frame 0xb56000
"""

import pytest

from emu.devtools.conformance import access
from emu.hw.memory import PhysMem
from emu.hw.paging import (
    CR0_PG,
    CR0_WP,
    CR4_PGE,
    CR4_PSE,
    PDE_PS_RSVD,
    PF_P,
    PF_RSVD,
    PF_U,
    PF_W,
    PTE_A,
    PTE_D,
    PTE_G,
    PTE_P,
    PTE_PCD,
    PTE_PS,
    PTE_PWT,
    PTE_U,
    PTE_W,
    Level,
    access_allowed,
    decode_flags,
    page_off,
    pde_frame_4m,
    pdx,
    pte_frame,
    ptx,
    walk,
)

CR3 = 0x10000
PT = 0x11000
VA = 0x00403123
PDE_PA = 0x10004
PTE_PA = 0x1100C
FRAME = 0x800000

VA4M = 0x00F56789
PDE4M_PA = 0x1000C

P, W, U, A, D, PS, G = PTE_P, PTE_W, PTE_U, PTE_A, PTE_D, PTE_PS, PTE_G


class CountingMem(PhysMem):
    """PhysMem that counts the walker's entry writes."""

    def __init__(self):
        super().__init__(16 << 20)
        self.writes = []

    def write32(self, addr, value):
        self.writes.append((addr, value))
        super().write32(addr, value)


def tables(pde_flags, pte_flags=None, pte_frame=FRAME):
    """The 4 KiB layout; pte_flags None leaves the PTE zero (not present)."""
    mem = CountingMem()
    mem.write32(PDE_PA, PT | pde_flags)
    if pte_flags is not None:
        mem.write32(PTE_PA, pte_frame | pte_flags)
    mem.writes.clear()
    return mem


def big(pde_value):
    mem = CountingMem()
    mem.write32(PDE4M_PA, pde_value)
    mem.writes.clear()
    return mem


# --- bit layout and helpers -------------------------------------------------

def test_entry_bits_are_the_ia32_positions():
    assert (P, W, U, PTE_PWT, PTE_PCD, A, D, PS, G) == (
        0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100)
    assert PDE_PS_RSVD == 1 << 21


def test_error_code_and_control_register_bits():
    assert (PF_P, PF_W, PF_U, PF_RSVD) == (1, 2, 4, 8)
    assert (CR0_PG, CR0_WP, CR4_PSE, CR4_PGE) == (1 << 31, 1 << 16, 1 << 4, 1 << 7)


def test_address_split_helpers():
    assert (pdx(VA), ptx(VA), page_off(VA)) == (1, 3, 0x123)
    assert (pdx(0xFFFFFFFF), ptx(0xFFFFFFFF), page_off(0xFFFFFFFF)) == (0x3FF, 0x3FF, 0xFFF)
    assert pte_frame(0x00800FFF) == 0x00800000
    assert pde_frame_4m(0x00BFF0E7) == 0x00800000


def test_decode_flags_format():
    assert decode_flags(0x00800067) == "P W U A D"
    assert decode_flags(0x00800001) == "P r s"
    assert decode_flags(0x00800066) == "np"
    assert decode_flags(0x00800099, pde=True) == "P r s PWT PCD PS"
    assert decode_flags(0x00800181) == "P r s PAT G"


# --- the record -----------------------------------------------------------------

def test_record_of_a_4k_read():
    w = walk(tables(P | W | U, P | W | U), CR3, VA, user=True)
    assert w.levels == (Level("pde", PDE_PA, 0x11007, 0x11027),
                        Level("pte", PTE_PA, 0x800007, 0x800027))
    assert (w.fault, w.error_code, w.pa, w.frame) == (False, None, 0x800123, 0x800000)
    assert (w.large, w.writable, w.user_ok, w.dirty, w.global_, w.refs) == (
        False, True, True, False, False, 2)
    assert (w.va, w.write, w.user, w.fetch) == (VA, False, True, False)
    assert w.fault_kind is None


def test_record_combines_rights_and_takes_g_from_the_mapping_entry():
    w = walk(tables(P | W | G, P | U | G | D), CR3, VA)
    assert (w.writable, w.user_ok, w.dirty, w.global_) == (False, False, True, True)


def test_record_g_of_a_pde_to_a_table_is_ignored():
    w = walk(tables(P | G, P), CR3, VA)
    assert w.global_ is False


def test_record_of_a_4m_read():
    w = walk(big(0x00800000 | P | U | PS | G), CR3, VA4M, pse=True)
    assert w.levels == (Level("pde", PDE4M_PA, 0x00800185, 0x008001A5),)
    assert (w.pa, w.frame, w.large, w.refs) == (0xB56789, 0xB56000, True, 1)
    assert (w.writable, w.user_ok, w.dirty, w.global_) == (False, True, False, True)


def test_record_of_a_not_present_pde():
    w = walk(CountingMem(), CR3, VA, write=True, user=True)
    assert w.levels == (Level("pde", PDE_PA, 0, 0),)
    assert (w.fault, w.error_code, w.pa, w.frame, w.refs) == (True, 6, None, None, 1)
    assert (w.writable, w.user_ok, w.dirty, w.global_) == (False, False, False, False)
    assert w.fault_kind == "not-present"


def test_describe_shows_split_levels_and_outcome():
    text = walk(tables(P | W | U, P | W | U), CR3, VA, write=True).describe()
    assert text.splitlines() == [
        "va 0x00403123 = pdx 0x001 | ptx 0x003 | off 0x123  (supervisor write)",
        "  pde @ pa 0x00010004 = 0x00011007  [P W U A]  -> 0x00011027",
        "  pte @ pa 0x0001100c = 0x00800007  [P W U A D]  -> 0x00800067",
        "  -> pa 0x00800123 (frame 0x00800000, 4 KiB page; W U D)",
    ]
    fault = walk(tables(P | U), CR3, VA, write=True, user=True)
    assert str(fault).splitlines()[-1] == "  #PF not-present, error code 0x6 [W U]"


# --- rights: user / supervisor --------------------------------------------------

def test_user_read_needs_us_in_the_pde():
    w = walk(tables(P | W, P | W | U), CR3, VA, user=True)
    assert (w.fault, w.error_code, w.fault_kind) == (True, PF_P | PF_U, "protection")


def test_user_read_needs_us_in_the_pte():
    w = walk(tables(P | W | U, P | W), CR3, VA, user=True)
    assert (w.fault, w.error_code) == (True, 5)


def test_user_fetch_is_a_read_for_rights():
    assert walk(tables(P | U, P | U), CR3, VA, user=True, fetch=True).pa == 0x800123
    w = walk(tables(P | U, P), CR3, VA, user=True, fetch=True)
    assert (w.fault, w.error_code) == (True, 5)    # no I/D bit in this mode


def test_user_write_needs_rw_in_the_pte_even_with_wp0():
    w = walk(tables(P | W | U, P | U), CR3, VA, write=True, user=True, wp=False)
    assert (w.fault, w.error_code) == (True, 7)


def test_user_write_needs_rw_in_the_pde_even_with_wp0():
    w = walk(tables(P | U, P | W | U), CR3, VA, write=True, user=True, wp=False)
    assert (w.fault, w.error_code) == (True, 7)


def test_user_write_with_rw_and_us_everywhere_succeeds():
    w = walk(tables(P | W | U, P | W | U), CR3, VA, write=True, user=True, wp=True)
    assert (w.fault, w.pa, w.dirty) == (False, 0x800123, True)


def test_supervisor_read_and_fetch_ignore_us_and_rw():
    for fetch in (False, True):
        w = walk(tables(P, P), CR3, VA, fetch=fetch, wp=True)
        assert (w.fault, w.pa) == (False, 0x800123)


# --- WP --------------------------------------------------------------------------

def test_wp0_supervisor_write_to_read_only_succeeds_and_sets_d():
    mem = tables(P, P)
    w = walk(mem, CR3, VA, write=True, wp=False)
    assert (w.fault, w.pa, w.writable, w.dirty) == (False, 0x800123, False, True)
    assert mem.read32(PTE_PA) == 0x800061


def test_wp1_supervisor_write_to_read_only_pte_faults_ec3():
    mem = tables(P | W, P)
    w = walk(mem, CR3, VA, write=True, wp=True)
    assert (w.fault, w.error_code) == (True, 3)
    assert mem.read32(PTE_PA) == 0x800001


def test_wp1_supervisor_write_to_read_only_pde_faults_ec3():
    w = walk(tables(P, P | W), CR3, VA, write=True, wp=True)
    assert (w.fault, w.error_code) == (True, PF_P | PF_W)


# --- not present beats rights ------------------------------------------------

def test_not_present_pte_beats_a_refusing_pde():
    mem = tables(P, None)          # supervisor-only, read-only PDE
    w = walk(mem, CR3, VA, write=True, user=True)
    assert (w.fault, w.error_code) == (True, PF_W | PF_U)   # P=0, not 7
    assert w.levels[1] == Level("pte", PTE_PA, 0, 0)


def test_not_present_fault_ignores_the_other_bits_of_the_entry():
    w = walk(tables(P, W | U), CR3, VA, user=True)   # PTE has W and U but P=0
    assert (w.error_code, w.writable, w.user_ok) == (4, False, False)


@pytest.mark.parametrize("write,user,ec", [(False, False, 0), (True, False, 2),
                                           (False, True, 4), (True, True, 6)])
def test_error_code_w_and_u_bits_of_a_not_present_fault(write, user, ec):
    assert walk(CountingMem(), CR3, VA, write=write, user=user).error_code == ec


# --- PSE -------------------------------------------------------------------------

def test_pse_4m_write_sets_a_and_d_in_the_pde():
    mem = big(0x00800000 | P | W | PS)
    w = walk(mem, CR3, VA4M, write=True, pse=True, wp=True)
    assert (w.pa, w.dirty) == (0xB56789, True)
    assert mem.read32(PDE4M_PA) == 0x008000E3


def test_pse_4m_pat_bit12_is_not_a_frame_bit():
    w = walk(big(0x00801000 | P | PS), CR3, VA4M, pse=True)
    assert w.pa == 0xB56789


def test_pse_4m_rights_apply_to_the_pde():
    w = walk(big(0x00800000 | P | W | PS), CR3, VA4M, user=True, pse=True)
    assert (w.fault, w.error_code, w.large) == (True, 5, True)


def test_ps_ignored_when_pse_off():
    mem = big(0x00A00000 | P | PS)         # bit 21 set too: a frame bit here
    mem.write32(0x00A00000 + 4 * ptx(VA4M), 0x00300000 | P)
    w = walk(mem, CR3, VA4M, pse=False)
    assert (w.fault, w.large, w.refs, w.pa) == (False, False, 2, 0x00300789)
    assert mem.read32(PDE4M_PA) == 0x00A000A1


# --- RSVD ------------------------------------------------------------------------

def test_rsvd_bit21_in_a_4m_pde_faults_p_and_rsvd():
    mem = big(0x00800000 | PDE_PS_RSVD | P | W | U | PS)
    w = walk(mem, CR3, VA4M, pse=True)
    assert (w.fault, w.error_code, w.fault_kind) == (True, PF_P | PF_RSVD, "reserved-bit")
    assert mem.writes == []                 # no A


def test_rsvd_wins_over_rights():
    w = walk(big(0x00800000 | PDE_PS_RSVD | P | PS), CR3, VA4M,
             write=True, user=True, pse=True, wp=True)
    assert w.error_code == 15


def test_rsvd_bit21_is_not_checked_in_a_pde_to_a_table():
    mem = CountingMem()
    mem.write32(PDE_PA, 0x00211000 | P)
    mem.write32(0x00211000 + 4 * ptx(VA), FRAME | P)
    assert walk(mem, CR3, VA, pse=True).pa == 0x800123


# --- A/D -------------------------------------------------------------------------

def test_pde_to_a_table_gets_a_even_when_the_pte_is_not_present():
    mem = tables(P | W, None)
    walk(mem, CR3, VA)
    assert mem.writes == [(PDE_PA, 0x11023)]


def test_pde_to_a_table_gets_a_even_when_the_pte_refuses():
    mem = tables(P | W | U, P | W)
    walk(mem, CR3, VA, user=True)
    assert mem.writes == [(PDE_PA, 0x11027)]


def test_protection_fault_sets_no_a_or_d_in_the_mapping_entry():
    mem = tables(P | W | U, P | U)
    walk(mem, CR3, VA, write=True, user=True)
    assert mem.read32(PTE_PA) == 0x800005


def test_pde_to_a_table_never_gets_d():
    mem = tables(P | W, P | W)
    walk(mem, CR3, VA, write=True)
    assert (mem.read32(PDE_PA), mem.read32(PTE_PA)) == (0x11023, 0x800063)


def test_read_sets_a_but_not_d_in_the_mapping_entry():
    mem = tables(P | W, P | W)
    walk(mem, CR3, VA)
    assert mem.read32(PTE_PA) == 0x800023


def test_entries_are_written_only_when_they_change():
    mem = tables(P | W | A, P | W | A | D)
    w = walk(mem, CR3, VA, write=True)
    assert mem.writes == []
    assert all(lv.value == lv.value_after for lv in w.levels)


def test_recursive_pde_is_read_as_a_pte_after_its_a_was_set():
    mem = CountingMem()
    mem.write32(CR3 + 4 * 5, CR3 | P | W)          # PD slot 5 points at the PD
    va = (5 << 22) | (5 << 12) | 0x10
    w = walk(mem, CR3, va, write=True)
    assert w.levels == (Level("pde", 0x10014, 0x10003, 0x10023),
                        Level("pte", 0x10014, 0x10023, 0x10063))
    assert w.pa == 0x10010


# --- the TLB hit rule ----------------------------------------------------------

def test_hit_allows_reads_with_the_rights():
    assert access_allowed(False, False, False, write=False, user=False, wp=True)
    assert not access_allowed(True, False, True, write=False, user=True, wp=False)


def test_hit_refuses_a_write_through_a_clean_entry():
    assert not access_allowed(True, True, False, write=True, user=True, wp=True)
    assert not access_allowed(True, True, False, write=True, user=False, wp=False)
    assert access_allowed(True, True, True, write=True, user=True, wp=True)


def test_hit_supervisor_write_to_read_only_follows_wp():
    assert access_allowed(False, False, True, write=True, user=False, wp=False)
    assert not access_allowed(False, False, True, write=True, user=False, wp=True)
    assert not access_allowed(False, True, True, write=True, user=True, wp=False)


# --- page-crossing accesses -------------------------------------------------

def crossing(second_pte):
    """VA 0x00403ffe..0x00404001: PTE 3 -> 0x800000, PTE 4 as given."""
    mem = tables(P | W | U, P | W | U)
    mem.write32(PTE_PA + 4, second_pte)
    for i, b in enumerate(b"\x11\x22"):
        mem.write8(0x800FFE + i, b)
    for i, b in enumerate(b"\x33\x44"):
        mem.write8(0x900000 + i, b)
    mem.writes.clear()
    return mem


def test_crossing_read_joins_both_pages_little_endian():
    got = access(crossing(0x900000 | P | U), CR3, 0x00403FFE, 4, "read", user=True)
    assert got.byte_pas == (0x800FFE, 0x800FFF, 0x900000, 0x900001)
    assert (got.fault, got.value, len(got.walks)) == (False, 0x44332211, 2)


def test_crossing_fault_on_second_page_reports_its_first_byte():
    mem = crossing(0x900000 | P | U)             # second page read-only
    got = access(mem, CR3, 0x00403FFE, 4, "write", user=True, value=0xAABBCCDD)
    assert (got.fault, got.cr2, got.error_code, got.fault_page) == (True, 0x00404000, 7, 1)
    # First page keeps the A and D its walk set; no byte was stored anywhere.
    assert mem.read32(PTE_PA) == 0x800067
    assert mem.read(0x800FFE, 2) == b"\x11\x22"
    assert mem.read(0x900000, 2) == b"\x33\x44"


def test_crossing_fault_on_first_page_stops_before_the_second():
    mem = crossing(0x900000 | P | W | U)
    mem.write32(PTE_PA, 0)
    got = access(mem, CR3, 0x00403FFE, 4, "read")
    assert (got.cr2, got.error_code, got.fault_page, len(got.walks)) == (0x00403FFE, 0, 0, 1)
    assert mem.read32(PTE_PA + 4) == 0x900007    # second page untouched


def test_crossing_write_stores_all_bytes_after_both_walks():
    mem = crossing(0x900000 | P | W | U)
    got = access(mem, CR3, 0x00403FFE, 4, "write", value=0xAABBCCDD)
    assert got.value == 0xAABBCCDD
    assert mem.read(0x800FFE, 2) + mem.read(0x900000, 2) == b"\xdd\xcc\xbb\xaa"
