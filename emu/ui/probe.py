"""Looking at a machine without touching it: reads for the stepper's views.

Everything here is side-effect free: walks do not set A/D bits, reads do not
allocate pages, nothing counts as a TLB lookup.  A view must never change
the run it shows (going back replays the run and must find it unchanged).

Address spaces (README, "Vocabulary"): ``va`` through the guest's own tables (the
guest's view; under shadow paging the hardware really walks the shadow),
``pa`` guest-physical, ``ma`` machine.  Natively pa and ma are the same.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..hw import paging
from ..hw.memory import BusError
from ..hw.paging import PTE_P, PTE_PS

_TABLE = struct.Struct("<1024I")


class _ReadOnly:
    """Memory for a walk that must not set A/D bits."""

    def __init__(self, mem):
        self.read32 = mem.read32

    def write32(self, addr: int, value: int) -> None:
        pass


@dataclass(frozen=True)
class Range:
    """A run of consecutive pages mapped alike (a folded table)."""

    first: int         # first index (vpn, ppn ...)
    count: int
    target: int | None  # the first page it maps to (None: not mapped)
    label: str         # what the entries have in common (decoded flags ...)

    @property
    def last(self) -> int:
        return self.first + self.count - 1


def fold(rows) -> list[Range]:
    """Fold (index, target, label) rows, in index order, into ranges of
    consecutive indexes with consecutive targets and equal labels."""
    out: list[Range] = []
    for index, target, label in rows:
        if out:
            r = out[-1]
            nxt = None if r.target is None else r.target + r.count
            if (index == r.first + r.count and label == r.label
                    and (target == nxt if target is not None else r.target is None)):
                out[-1] = Range(r.first, r.count + 1, r.target, r.label)
                continue
        out.append(Range(index, 1, target, label))
    return out


class Probe:
    """Side-effect-free views of one ``System``."""

    def __init__(self, system):
        self.sys = system
        self.cpu = system.cpu
        self.vmm = system.vmm
        self.native = system.vmm is None
        self.gmem = system.guest          # guest RAM (PhysMem or GuestPhys)

    # --- guest translation --------------------------------------------------------
    @property
    def guest_paging(self) -> bool:
        return bool(self.cpu.cr0 & paging.CR0_PG)

    def walk(self, va: int, *, write=False, user=False) -> paging.Walk | None:
        """The guest's walk of ``va`` (no A/D set), or None when its paging is off."""
        if not self.guest_paging:
            return None
        try:
            return paging.walk(_ReadOnly(self.gmem), self.cpu.cr3, va & 0xFFFFFFFF,
                               write=write, user=user,
                               wp=bool(self.cpu.cr0 & paging.CR0_WP),
                               pse=bool(self.cpu.cr4 & paging.CR4_PSE))
        except BusError:
            return None

    def va_to_pa(self, va: int) -> int | None:
        """va -> pa through the guest's tables; None if not mapped."""
        va &= 0xFFFFFFFF
        if not self.guest_paging:
            return va
        w = self.walk(va)
        if w is None or w.fault:
            return None
        return w.pa

    def pa_to_ma(self, pa: int) -> int | None:
        """pa -> ma through the PMap (natively the same); None if unbacked."""
        if self.native:
            return pa
        mpn = self.vmm.pmap.mpn_of.get(pa >> 12)
        return None if mpn is None else (mpn << 12) | (pa & 0xFFF)

    # --- reading --------------------------------------------------------------------
    def read_pa(self, pa: int, n: int) -> bytes | None:
        """``n`` bytes of guest-physical memory (unbacked pages read as
        zeros); None past guest RAM."""
        if pa < 0 or pa + n > self.gmem.size:
            return None
        return self.gmem.read(pa, n)

    def read_ma(self, ma: int, n: int) -> bytes | None:
        mem = self.sys.mem
        if ma < 0 or ma + n > mem.size:
            return None
        return mem.read(ma, n)

    def read_va(self, va: int, n: int) -> bytes | None:
        """``n`` bytes at ``va`` (the guest's mapping); None if any page of
        them is not mapped."""
        out = bytearray()
        while n > 0:
            chunk = min(n, 4096 - (va & 0xFFF))
            pa = self.va_to_pa(va)
            data = None if pa is None else self.read_pa(pa, chunk)
            if data is None:
                return None
            out += data
            va = (va + chunk) & 0xFFFFFFFF
            n -= chunk
        return bytes(out)

    def guest_table(self, pa: int) -> tuple[int, ...]:
        """The 1024 entries of the guest table page at ``pa``."""
        data = self.read_pa(pa & ~0xFFF, 4096)
        return _TABLE.unpack(data) if data is not None else (0,) * 1024

    def machine_table(self, mpn: int) -> tuple[int, ...]:
        return _TABLE.unpack(self.sys.mem.peek_page(mpn))

    # --- the guest's tables, folded -------------------------------------------------
    def guest_mappings(self):
        """(vpn, ppn or None, mapping entry, large) of every guest va page
        whose page-directory entry is present (a 4 MiB page: 1024 rows)."""
        pse = bool(self.cpu.cr4 & paging.CR4_PSE)
        pd = self.guest_table(self.cpu.cr3)
        for pdx, gpde in enumerate(pd):
            if not gpde & PTE_P:
                continue
            if pse and gpde & PTE_PS:
                base = (gpde & paging.FRAME_4M) >> 12
                for i in range(1024):
                    yield (pdx << 10) | i, base + i, gpde, True
                continue
            pt = self.guest_table(gpde & paging.FRAME_4K)
            for ptx, gpte in enumerate(pt):
                yield (pdx << 10) | ptx, gpte >> 12 if gpte & PTE_P else None, gpte, False

    def shadow_entry(self, vpn: int) -> tuple[int | None, int | None]:
        """(spde, spte) the hardware would use for ``vpn`` under shadow
        paging (None where absent)."""
        shadow = getattr(self.vmm, "shadow", None)
        root = getattr(self.vmm, "root", None)
        if shadow is None or root is None:
            return None, None
        spde = root.entry(vpn >> 10)
        if not spde & PTE_P:
            return spde, None
        child = shadow.by_mpn.get(spde >> 12)
        return spde, None if child is None else child.entry(vpn & 0x3FF)
