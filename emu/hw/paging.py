"""IA-32 32-bit paging, bit for bit: the entry layout and the hardware walk.

A 32-bit linear address (va) is split two ways:

    4 KiB page (PDE.PS=0, or CR4.PSE=0):
     31                  22 21                  12 11                     0
    +----------------------+----------------------+------------------------+
    |   pdx: PD index (10) |   ptx: PT index (10) |  page offset (12)      |
    +----------------------+----------------------+------------------------+
      CR3[31:12] + pdx*4 -> PDE;  PDE[31:12] + ptx*4 -> PTE;  PTE[31:12] + off

    4 MiB page (CR4.PSE=1 and PDE.PS=1):
     31                  22 21                                            0
    +----------------------+-----------------------------------------------+
    |   pdx: PD index (10) |          offset in the 4 MiB page (22)        |
    +----------------------+-----------------------------------------------+
      CR3[31:12] + pdx*4 -> PDE;  PDE[31:22] + off

Entries are 32-bit little-endian words in physical memory.  The "mapping
entry" is the one that names the page: the PTE, or the PDE of a 4 MiB page.

``walk`` is what the hardware does on a TLB miss and returns a ``Walk``
record of every level it touched; the VMM fills shadows from it and the
console draws it, neither walks again.  The walker itself is address-space
blind: ``mem`` is guest RAM natively, machine memory when it walks a shadow.
"""

from __future__ import annotations

from struct import Struct
from typing import NamedTuple

__all__ = [
    "CR0_PG", "CR0_WP", "CR4_PGE", "CR4_PSE", "FRAME_4K", "FRAME_4M",
    "PDE_PAT_4M", "PDE_PS_RSVD", "PF_P", "PF_RSVD", "PF_U", "PF_W", "PTE_A",
    "PTE_D", "PTE_G", "PTE_P", "PTE_PAT", "PTE_PCD", "PTE_PS", "PTE_PWT",
    "PTE_U", "PTE_W", "Level", "Walk", "access_allowed", "decode_flags",
    "page_off", "pde_frame_4m", "pdx", "pte_frame", "ptx", "walk",
]

# --- entry bits (PDE and PTE share bits 0-6 and 8) -------------------------
PTE_P = 0x001        # Present: 0 = any access faults, every other bit ignored
PTE_W = 0x002        # R/W: 1 = writable (user always; supervisor when CR0.WP=1)
PTE_U = 0x004        # U/S: 1 = user (CPL 3) may access
PTE_PWT = 0x008      # Page-level write-through (caching only; no effect here)
PTE_PCD = 0x010      # Page-level cache disable (caching only; no effect here)
PTE_A = 0x020        # Accessed: set by the walk when the entry is used
PTE_D = 0x040        # Dirty: set in the mapping entry by a write (never in a PDE to a table)
PTE_PS = 0x080       # PDE: page size, 1 = 4 MiB page (only when CR4.PSE=1)
PTE_PAT = 0x080      # PTE: PAT index bit (same position as PS; caching only)
PTE_G = 0x100        # Global: mapping survives CR3 loads when CR4.PGE=1
PDE_PAT_4M = 0x1000  # 4 MiB PDE: PAT index bit (caching only)
PDE_PS_RSVD = 0x200000  # 4 MiB PDE: bit 21 reserved; set -> #PF with P|RSVD
FRAME_4K = 0xFFFFF000   # entry bits 31:12, frame of a 4 KiB page or page table
FRAME_4M = 0xFFC00000   # 4 MiB PDE bits 31:22, frame of a 4 MiB page

# --- #PF error code ---------------------------------------------------------
PF_P = 0x1           # 0 = not-present entry, 1 = protection or reserved-bit fault
PF_W = 0x2           # the access was a write
PF_U = 0x4           # the access was made at CPL 3
PF_RSVD = 0x8        # a reserved bit was set in a present entry

# --- control registers --------------------------------------------------------
CR0_PG = 1 << 31     # CR0.PG: paging on
CR0_WP = 1 << 16     # CR0.WP: supervisor writes obey R/W
CR4_PSE = 1 << 4     # CR4.PSE: 4 MiB pages allowed (PDE.PS honoured)
CR4_PGE = 1 << 7     # CR4.PGE: G bit honoured (global TLB entries)


def pdx(va: int) -> int:
    """Page-directory index: va[31:22]."""
    return (va >> 22) & 0x3FF


def ptx(va: int) -> int:
    """Page-table index: va[21:12]."""
    return (va >> 12) & 0x3FF


def page_off(va: int) -> int:
    """Offset in the 4 KiB page: va[11:0]."""
    return va & 0xFFF


def pte_frame(e: int) -> int:
    """Physical base named by a PTE or a PDE that points to a table."""
    return e & FRAME_4K


def pde_frame_4m(e: int) -> int:
    """Physical base of the 4 MiB page named by a PS=1 PDE."""
    return e & FRAME_4M


def decode_flags(entry: int, *, pde: bool = False) -> str:
    """Short readable flags, e.g. ``"P W U A D"`` or ``"P r s"``.

    ``np`` for a not-present entry (the hardware ignores its other bits).
    Otherwise: ``P``; ``W``/``r`` for R/W=1/0; ``U``/``s`` for U/S=1/0
    (user / supervisor only); then whichever of PWT PCD A D G are set, and
    bit 7 as ``PS`` in a PDE (``pde=True``) or ``PAT`` in a PTE.
    """
    if not entry & PTE_P:
        return "np"
    out = ["P", "W" if entry & PTE_W else "r", "U" if entry & PTE_U else "s"]
    for bit, name in ((PTE_PWT, "PWT"), (PTE_PCD, "PCD"), (PTE_A, "A"),
                      (PTE_D, "D"), (PTE_PS, "PS" if pde else "PAT"), (PTE_G, "G")):
        if entry & bit:
            out.append(name)
    return " ".join(out)


class Level(NamedTuple):
    """One entry the walk read."""

    name: str          # "pde" or "pte"
    entry_pa: int      # physical address of the entry (in the walked memory)
    value: int         # the entry as read
    value_after: int   # the entry after the walk set A/D (== value if unchanged)


class Walk(NamedTuple):
    """What one hardware walk did and found (an immutable record: a
    NamedTuple, because one is made on every TLB miss).

    On success ``pa`` is va's physical address and ``frame`` the base of the
    4 KiB physical page holding va (inside a 4 MiB page too).  ``writable`` /
    ``user_ok`` are R/W and U/S combined over all levels, ``dirty`` and
    ``global_`` the D and G bits of the mapping entry after the walk.
    On a fault ``pa``/``frame`` are None and ``error_code`` is the #PF code;
    after a protection or RSVD fault the rights fields describe the mapping
    that refused; after a not-present fault they are False.
    """

    va: int
    write: bool
    user: bool
    fetch: bool
    levels: tuple[Level, ...]   # in the order touched
    fault: bool
    error_code: int | None
    pa: int | None
    frame: int | None
    large: bool                 # mapped (or refused) by a 4 MiB PDE
    writable: bool
    user_ok: bool
    dirty: bool
    global_: bool
    refs: int                   # page-table entries read

    @property
    def fault_kind(self) -> str | None:
        """None (no fault), "not-present", "protection" or "reserved-bit"."""
        ec = self.error_code
        if not self.fault or ec is None:
            return None
        if ec & PF_RSVD:
            return "reserved-bit"
        return "protection" if ec & PF_P else "not-present"

    def describe(self) -> str:
        va = self.va
        kind = "fetch" if self.fetch else "write" if self.write else "read"
        who = "user" if self.user else "supervisor"
        if self.large:
            split = f"pdx {pdx(va):#05x} | off {va & 0x3FFFFF:#08x}"
        else:
            split = f"pdx {pdx(va):#05x} | ptx {ptx(va):#05x} | off {page_off(va):#05x}"
        lines = [f"va {va:#010x} = {split}  ({who} {kind})"]
        for lv in self.levels:
            flags = decode_flags(lv.value_after, pde=lv.name == "pde")
            line = f"  {lv.name} @ pa {lv.entry_pa:#010x} = {lv.value:#010x}  [{flags}]"
            if lv.value_after != lv.value:
                line += f"  -> {lv.value_after:#010x}"
            lines.append(line)
        if self.fault:
            ec = self.error_code or 0
            bits = " ".join(n for b, n in ((PF_P, "P"), (PF_W, "W"), (PF_U, "U"),
                                           (PF_RSVD, "RSVD")) if ec & b) or "-"
            lines.append(f"  #PF {self.fault_kind}, error code {ec:#x} [{bits}]")
        else:
            rights = ("W" if self.writable else "r") + (" U" if self.user_ok else " s")
            rights += " D" if self.dirty else ""
            rights += " G" if self.global_ else ""
            size = "4 MiB" if self.large else "4 KiB"
            lines.append(f"  -> pa {self.pa:#010x} (frame {self.frame:#010x}, {size} page;"
                         f" {rights})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def walk(mem, cr3: int, va: int, write: bool = False, user: bool = False,
         fetch: bool = False, wp: bool = False, pse: bool = False) -> Walk:
    """The hardware walk of ``va`` for one access; returns a ``Walk``.

    ``mem`` has ``read32(pa)`` and ``write32(pa, value)``; only aligned entry
    words are touched, and written only when A/D actually change.  Order of
    checks (as the CPU): not-present at any level faults with P=0 even if an
    upper level refuses; a present 4 MiB PDE with bit 21 faults P|RSVD before
    rights; then the combined rights.  A PDE that points to a table gets A as
    soon as the walk follows it; the mapping entry gets A (and D on a write)
    only if the access is allowed.  A fetch is a read (no NX in this mode).
    """
    # (The records are made with tuple.__new__: one walk per TLB miss.)
    ec = (PF_W if write else 0) | (PF_U if user else 0)
    # The rights the access needs at every level: U/S for any user access,
    # R/W for a user write, and for a supervisor write only under CR0.WP.
    need = (PTE_U if user else 0) | (PTE_W if write and (user or wp) else 0)
    pde_pa = (cr3 & FRAME_4K) | ((va >> 20) & 0xFFC)
    pde = mem.read32(pde_pa)
    if not pde & PTE_P:
        return _new(Walk, (va, write, user, fetch, (_new(Level, ("pde", pde_pa, pde, pde)),),
                           True, ec, None, None, False, False, False, False, False, 1))
    if pse and pde & PTE_PS:
        if pde & PDE_PS_RSVD:
            return Walk(va, write, user, fetch, (Level("pde", pde_pa, pde, pde),), True,
                        ec | PF_P | PF_RSVD, None, None, True, bool(pde & PTE_W),
                        bool(pde & PTE_U), bool(pde & PTE_D), bool(pde & PTE_G), 1)
        rights = pde
        if (rights & need) != need:
            return Walk(va, write, user, fetch, (Level("pde", pde_pa, pde, pde),), True,
                        ec | PF_P, None, None, True, bool(rights & PTE_W),
                        bool(rights & PTE_U), bool(pde & PTE_D), bool(pde & PTE_G), 1)
        after = pde | (PTE_A | PTE_D if write else PTE_A)
        if after != pde:
            mem.write32(pde_pa, after)
        frame = (pde & FRAME_4M) | (va & 0x3FF000)
        return _new(Walk, (va, write, user, fetch, (_new(Level, ("pde", pde_pa, pde, after)),),
                           False, None, frame | (va & 0xFFF), frame, True, bool(pde & PTE_W),
                           bool(pde & PTE_U), bool(after & PTE_D), bool(pde & PTE_G), 1))
    # The PDE points to a page table: following it sets its A (never D).
    pde_after = pde | PTE_A
    if pde_after != pde:
        mem.write32(pde_pa, pde_after)
    pde_level = _new(Level, ("pde", pde_pa, pde, pde_after))
    pte_pa = (pde & FRAME_4K) | ((va >> 10) & 0xFFC)
    pte = mem.read32(pte_pa)
    if not pte & PTE_P:
        return _new(Walk, (va, write, user, fetch,
                           (pde_level, _new(Level, ("pte", pte_pa, pte, pte))),
                           True, ec, None, None, False, False, False, False, False, 2))
    rights = pde & pte
    if (rights & need) != need:
        return Walk(va, write, user, fetch, (pde_level, Level("pte", pte_pa, pte, pte)),
                    True, ec | PF_P, None, None, False, bool(rights & PTE_W),
                    bool(rights & PTE_U), bool(pte & PTE_D), bool(pte & PTE_G), 2)
    after = pte | (PTE_A | PTE_D if write else PTE_A)
    if after != pte:
        mem.write32(pte_pa, after)
    frame = pte & FRAME_4K
    return _new(Walk, (va, write, user, fetch,
                       (pde_level, _new(Level, ("pte", pte_pa, pte, after))),
                       False, None, frame | (va & 0xFFF), frame, False, bool(rights & PTE_W),
                       bool(rights & PTE_U), bool(after & PTE_D), bool(pte & PTE_G), 2))


_new = tuple.__new__
_unpack32 = Struct("<I").unpack_from
_pack32 = Struct("<I").pack_into


def walk_quiet(mem, cr3: int, va: int, write: bool, user: bool, wp: bool, pse: bool):
    """``walk`` for a run nobody watches, when it maps a 4 KiB page without
    a fault: the figures of its record -- (frame's page number, writable,
    user_ok, dirty, global, large, refs) -- without the record, with the
    same A/D bits written.  Both entries are read before any bit is
    written; None (nothing changed) for anything else: a fault, a 4 MiB
    page, a table outside ``mem``'s pages.  ``mem`` is a ``PhysMem``."""
    pages = mem.pages
    pde_pa = (cr3 & FRAME_4K) | ((va >> 20) & 0xFFC)
    pd = pages.get(pde_pa >> 12)
    if pd is None:
        return None
    pde = _unpack32(pd, pde_pa & 0xFFF)[0]
    if not pde & PTE_P or (pse and pde & PTE_PS):
        return None
    pte_pa = (pde & FRAME_4K) | ((va >> 10) & 0xFFC)
    pt = pages.get(pte_pa >> 12)
    if pt is None:
        return None
    pte = _unpack32(pt, pte_pa & 0xFFF)[0]
    rights = pde & pte
    need = (PTE_U if user else 0) | (PTE_W if write and (user or wp) else 0)
    if not pte & PTE_P or rights & need != need:
        return None
    if not pde & PTE_A:
        _pack32(pd, pde_pa & 0xFFF, pde | PTE_A)
    after = pte | (PTE_A | PTE_D if write else PTE_A)
    if after != pte:
        _pack32(pt, pte_pa & 0xFFF, after)
    return ((pte & FRAME_4K) >> 12, bool(rights & PTE_W), bool(rights & PTE_U),
            bool(after & PTE_D), bool(pte & PTE_G), False, 2)


def access_allowed(writable: bool, user_ok: bool, dirty: bool, *, write: bool,
                   user: bool, wp: bool) -> bool:
    """May a TLB hit on a cached translation serve this access without a walk?

    The rights rule of ``walk`` applied to the cached combined rights, plus
    one hit-only rule: a write through a translation cached with D=0 is NOT
    served from the TLB.  The hardware must re-walk so the mapping entry in
    memory gets its D bit (the TLB cannot set it), so the caller walks again.
    """
    if user:
        if not user_ok:
            return False
        return not write or (writable and dirty)
    return not write or (dirty and (writable or not wp))
