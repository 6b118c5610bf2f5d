"""Nested paging hardware: the two-dimensional walk (EPT/NPT style).

Under nested paging the hardware translates va -> pa with the guest's own
tables and pa -> ma with a nested table the VMM owns (same IA-32 format:
npde, npte).  Every guest page-table reference is itself a guest-physical
address, so it goes through the nested table first::

                 nested walk          guest reference
    gCR3 (pa)  -> npde, npte   ->     gpde
    gpde (pa)  -> npde, npte   ->     gpte
    gpte (pa)  -> npde, npte   ->     the data's ma

For 2-level guest and nested tables a cold walk makes (2+1)(2+1)-1 = 8
table references (Bhargava et al., ASPLOS 2008); with a 4 MiB guest page the
middle row is skipped: 5.  The walker records every reference in ``grid``
(row, column, address, value) so the trace and the stepper can draw it.

A small nested-translation cache ("NTLB", as in AMD's nested TLB) keeps the
last ``ntlb_entries`` pa-page -> ma-page translations (LRU), so a warm walk
skips the nested walks of pages it saw recently; 0 turns it off.  The TLB
itself caches the whole va -> ma translation.

A missing nested entry raises ``NestedFault``: an EPT violation, which exits
to the VMM with the guest-physical address.  Guest faults (the guest's own
tables deny the access) are ordinary #PF that go to the guest's handler.
"""

from __future__ import annotations

from collections import OrderedDict
from struct import Struct

from . import paging
from .exceptions import NPF, GuestFault
from .paging import PDE_PS_RSVD, PTE_A, PTE_D, PTE_G, PTE_P, PTE_PS, PTE_U, PTE_W, Walk

_new = tuple.__new__
_unpack32 = Struct("<I").unpack_from


def _present(pages: dict, ma: int) -> int | None:
    """The present entry at ``ma`` of memory ``pages`` (None: not present,
    or its page not there)."""
    pg = pages.get(ma >> 12)
    if pg is None:
        return None
    entry = _unpack32(pg, ma & 0xFFF)[0]
    return entry if entry & PTE_P else None


class NestedFault(GuestFault):
    """An EPT violation: no nested entry for guest-physical ``gpa``."""

    __slots__ = ("gpa", "refs", "write")

    def __init__(self, va: int, gpa: int, write: bool, refs: int):
        super().__init__(NPF, 2 if write else 0, va)
        self.gpa = gpa
        self.write = write
        self.refs = refs       # table references made before the fault


class _GuestTables:
    """Guest-physical memory as the 2D walker sees it: every word read or
    written goes through the nested table first."""

    __slots__ = ("walker", "row", "seen")

    def __init__(self, walker):
        self.walker = walker
        self.row = 0
        self.seen: dict[int, int] = {}   # pa -> ma of the entries read this walk

    def read32(self, pa: int) -> int:
        w = self.walker
        row = self.row
        name = _ROWS[row]
        ma = w.translate_pa(pa, False, name)
        self.seen[pa] = (ma, w.last_writable)
        pg = w.mem.pages.get(ma >> 12)          # (PhysMem.read32, inline: an entry)
        value = _unpack32(pg, ma & 0xFFF)[0] if pg is not None else w.mem.read32(ma)
        w.refs += 1
        w.grid.append((name, _ENTRIES[row], ma, value))
        self.row = row + 1
        return value

    def write32(self, pa: int, value: int) -> None:
        # The A/D update of an entry the walk just read: no new translation,
        # but it is a write: a read-only npte (a shared page) stops it.
        ma, writable = self.seen[pa]
        w = self.walker
        if not writable:
            raise NestedFault(w._va, pa, True, w.refs)
        w.mem.write32(ma, value)


_ROWS = ("gcr3", "gpde", "gpte")
_ENTRIES = ("gpde", "gpte", "gpte")     # what the reference of each row reads


class NestedWalker:
    """The hardware's 2D walker; used as ``Mmu.walker`` in nested mode."""

    STATS = {
        "ntlb_hits": "nested translations found in the nested-translation cache",
        "ntlb_misses": "nested translations that walked the nested table",
        "nested_refs": "nested-table references (npde, npte)",
        "guest_refs": "guest page-table references (gpde, gpte)",
    }

    def __init__(self, mem, guest_paging, ntlb_entries: int = 16):
        self.mem = mem                  # machine memory
        self.guest_paging = guest_paging  # callable: is the guest's CR0.PG set?
        self.ncr3 = 0                   # ma of the nested page directory
        self.ntlb: OrderedDict[int, int] = OrderedDict()
        self.ntlb_entries = ntlb_entries
        self.ntlb_hits = 0
        self.ntlb_misses = 0
        self.nested_refs = 0
        self.guest_refs = 0
        self.refs = 0
        self.last_writable = True
        self.grid: list = []
        self.last_grid: list = []
        self._va = 0
        self._view = _GuestTables(self)

    def flush_ntlb(self) -> None:
        self.ntlb.clear()

    def forget(self, ppn: int) -> None:
        """The nested entry of ``ppn`` changed: drop its cached translation."""
        self.ntlb.pop(ppn, None)

    def translate_pa(self, pa: int, write: bool, row: str | None) -> int:
        """pa -> ma through the nested table (or the NTLB); ``row`` names the
        reference for the grid (None: an A/D update, already translated)."""
        ppn = pa >> 12
        cached = self.ntlb.get(ppn)
        if cached is not None and (cached[1] or not write):
            mpn, self.last_writable = cached
            self.ntlb.move_to_end(ppn)
            if row is not None:
                self.ntlb_hits += 1
                self.grid.append((row, "ntlb", mpn << 12, mpn))
            return (mpn << 12) | (pa & 0xFFF)
        mem = self.mem
        pages = mem.pages               # (PhysMem.read32, inline: two per miss)
        npde_ma = self.ncr3 | ((pa >> 20) & 0xFFC)
        pg = pages.get(npde_ma >> 12)
        npde = _unpack32(pg, npde_ma & 0xFFF)[0] if pg is not None else mem.read32(npde_ma)
        self.refs += 1
        self.nested_refs += 1
        self.grid.append((row, "npde", npde_ma, npde))
        if not npde & PTE_P:
            raise NestedFault(self._va, pa, write, self.refs)
        if not npde & PTE_A:
            mem.write32(npde_ma, npde | PTE_A)
        npte_ma = (npde & 0xFFFFF000) | ((pa >> 10) & 0xFFC)
        pg = pages.get(npte_ma >> 12)
        npte = _unpack32(pg, npte_ma & 0xFFF)[0] if pg is not None else mem.read32(npte_ma)
        self.refs += 1
        self.nested_refs += 1
        self.grid.append((row, "npte", npte_ma, npte))
        if not npte & PTE_P or (write and not npte & PTE_W):
            raise NestedFault(self._va, pa, write, self.refs)
        after = npte | (PTE_A | PTE_D if write else PTE_A)
        if after != npte:
            mem.write32(npte_ma, after)
        mpn = npte >> 12
        self.last_writable = bool(npte & PTE_W)
        if row is not None:
            self.ntlb_misses += 1
        self._cache(ppn, mpn, self.last_writable)
        return (mpn << 12) | (pa & 0xFFF)

    def _cache(self, ppn: int, mpn: int, writable: bool) -> None:
        """A walked nested translation goes into the NTLB (least recently
        used out)."""
        if self.ntlb_entries:
            ntlb = self.ntlb
            ntlb[ppn] = (mpn, writable)
            if len(ntlb) > self.ntlb_entries:
                ntlb.popitem(last=False)

    def __call__(self, mem, cr3: int, va: int, write: bool = False, user: bool = False,
                 fetch: bool = False, wp: bool = False, pse: bool = False):
        """The 2D walk of ``va``: a ``paging.Walk`` whose ``pa``/``frame`` are
        machine addresses and ``refs`` counts every reference, nested ones
        included.  Raises ``NestedFault`` on a missing nested entry."""
        self.refs = 0
        self.grid = []
        self._va = va
        try:
            # A read-only npte (a page the VMM shares) must stop later writes
            # through the TLB entry this walk makes: the entry is marked clean
            # (dirty=False), so a write re-walks and meets the nested check.
            if not self.guest_paging():
                # Guest paging off: va is the pa; only the nested dimension.
                ma = self.translate_pa(va, write, "data")
                frame = ma & 0xFFFFF000
                return paging.Walk(va, write, user, fetch, (), False, None, ma, frame, False,
                                   True, True, self.last_writable, False, self.refs)
            view = self._view
            view.row = 0
            view.seen.clear()
            w = paging.walk(view, cr3, va, write, user, fetch, wp, pse)
            self.guest_refs += w.refs
            # (the records: Walk._replace's, without its per-field cost)
            if w.fault:
                return _new(Walk, (*w[:14], self.refs))
            ma = self.translate_pa(w.pa, write, "data")
            return _new(Walk, (*w[:7], ma, ma & 0xFFFFF000, w[9], w[10], w[11],
                               w[12] and self.last_writable, w[13], self.refs))
        finally:
            self.last_grid = self.grid

    # --- the walk nobody watches ----------------------------------------
    def _peek(self, ppn: int) -> tuple | None:
        """The nested translation of guest page ``ppn`` as ``translate_pa``
        would find it, changing nothing: (mpn, writable, npde_ma, npde,
        npte_ma, npte); npde_ma is None for an NTLB hit.  None: a missing
        nested entry (the full walk raises the fault)."""
        cached = self.ntlb.get(ppn)
        if cached is not None:
            return cached[0], cached[1], None, 0, 0, 0
        pages = self.mem.pages
        npde_ma = self.ncr3 | ((ppn >> 8) & 0xFFC)
        npde = _present(pages, npde_ma)
        if npde is None:
            return None
        npte_ma = (npde & 0xFFFFF000) | ((ppn << 2) & 0xFFC)
        npte = _present(pages, npte_ma)
        if npte is None:
            return None
        return npte >> 12, bool(npte & PTE_W), npde_ma, npde, npte_ma, npte

    def _peek_entry(self, pa: int) -> tuple | None:
        """(the guest entry at ``pa``, its page's ``_peek``), changing
        nothing; None where the full walk would fault or read no page."""
        peeked = self._peek(pa >> 12)
        if peeked is None:
            return None
        pg = self.mem.pages.get(peeked[0])
        if pg is None:
            return None
        return _unpack32(pg, pa & 0xFFF)[0], peeked

    def _commit(self, ppn: int, peeked: tuple, write: bool) -> None:
        """What ``translate_pa`` does to the NTLB, the nested entries and
        the counts for the translation ``_peek`` found."""
        mpn, writable, npde_ma, npde, npte_ma, npte = peeked
        ntlb = self.ntlb
        if npde_ma is None:
            ntlb.move_to_end(ppn)
            self.ntlb_hits += 1
            return
        mem = self.mem
        if not npde & PTE_A:
            mem.write32(npde_ma, npde | PTE_A)
        after = npte | (PTE_A | PTE_D if write else PTE_A)
        if after != npte:
            mem.write32(npte_ma, after)
        self.refs += 2
        self.nested_refs += 2
        self.ntlb_misses += 1
        self._cache(ppn, mpn, writable)

    def fast(self, mem, cr3: int, va: int, write: bool, user: bool, wp: bool, pse: bool):
        """The 2D walk of ``va`` for a run nobody watches (``paging.walk_quiet``'s
        counterpart; ``mem`` is ignored, as by ``__call__``), when it succeeds
        and guest paging is on: (mpn of the data, writable, user_ok, dirty,
        global, large, refs) -- the figures of ``__call__``'s record, the
        same entries written, the same counts and NTLB order -- without the
        record and the grid (read only by a fault's exit and by watchers).
        Everything is read before anything is written; None (nothing
        changed) sends the caller to the full walk: a fault of either
        dimension, a reserved bit, or an NTLB eviction that could change a
        later lookup of the same walk."""
        if not self.guest_paging():
            return None
        pde_pa = (cr3 & 0xFFFFF000) | ((va >> 20) & 0xFFC)
        got = self._peek_entry(pde_pa)
        if got is None:
            return None
        pde, t_pd = got
        if not pde & PTE_P:
            return None
        need = (PTE_U if user else 0) | (PTE_W if write and (user or wp) else 0)
        if pse and pde & PTE_PS:
            if pde & PDE_PS_RSVD or (pde & need) != need:
                return None
            pde_after = pde | (PTE_A | PTE_D if write else PTE_A)
            if pde_after != pde and not t_pd[1]:
                return None                 # the A/D update meets a read-only npte
            data_ppn = ((pde & 0xFFC00000) | (va & 0x3FF000)) >> 12
            walked = ((pde_pa >> 12, t_pd, False),)
            rights, mapping, mapping_after, large = pde, pde, pde_after, True
        else:
            if not pde & PTE_A and not t_pd[1]:
                return None
            pte_pa = (pde & 0xFFFFF000) | ((va >> 10) & 0xFFC)
            got = self._peek_entry(pte_pa)
            if got is None:
                return None
            pte, t_pt = got
            rights = pde & pte
            if not pte & PTE_P or (rights & need) != need:
                return None
            mapping_after = pte | (PTE_A | PTE_D if write else PTE_A)
            if mapping_after != pte and not t_pt[1]:
                return None
            data_ppn = (pte & 0xFFFFF000) >> 12
            walked = ((pde_pa >> 12, t_pd, False), (pte_pa >> 12, t_pt, False))
            mapping, large = pte, False
        t_data = self._peek(data_ppn)
        if t_data is None or (write and not t_data[1]):
            return None
        walked += ((data_ppn, t_data, write),)
        # A miss inserts into the NTLB: where that may evict an entry a later
        # translation of this walk found, or a page that missed comes again
        # (and would hit), the full walk tells.
        if self.ntlb_entries:
            room = self.ntlb_entries - len(self.ntlb)
            missed: list = []
            for ppn, t, _ in walked:
                if ppn in missed or (t[2] is None and len(missed) > room):
                    return None
                if t[2] is not None:
                    missed.append(ppn)
        # Commit, in the full walk's order.
        self.refs = 0
        self._va = va
        mem = self.mem                      # (the ``mem`` argument is the same memory)
        self._commit(*walked[0])
        if large:
            if pde_after != pde:
                mem.write32((t_pd[0] << 12) | (pde_pa & 0xFFF), pde_after)
            guest_refs = 1
        else:
            if not pde & PTE_A:
                mem.write32((t_pd[0] << 12) | (pde_pa & 0xFFF), pde | PTE_A)
            self._commit(*walked[1])
            if mapping_after != mapping:
                mem.write32((t_pt[0] << 12) | (pte_pa & 0xFFF), mapping_after)
            guest_refs = 2
        self.refs += guest_refs
        self.guest_refs += guest_refs
        self._commit(*walked[-1])
        self.last_writable = t_data[1]
        return (t_data[0], bool(rights & PTE_W), bool(rights & PTE_U),
                bool(mapping_after & PTE_D) and t_data[1], bool(mapping & PTE_G), large,
                self.refs)

    def stats(self) -> dict:
        return {"ntlb_entries": self.ntlb_entries, "ntlb_hits": self.ntlb_hits,
                "ntlb_misses": self.ntlb_misses, "nested_refs": self.nested_refs,
                "guest_refs": self.guest_refs}
