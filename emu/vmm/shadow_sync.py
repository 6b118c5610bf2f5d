"""Keeping shadow tables in step with the guest's: the out-of-sync pages of
the oos policies (let out of sync at a write, brought back at a CR3 load or
an event that empties the TLB) and what INVLPG drops (one va's entries, and
every cached directory entry that no longer says what its gpde says).

A mixin of ``ShadowTables`` (``shadow.py``), which holds the tables, the
reverse map and ``_clear``/``zap``/``free``/``_protect`` used here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hw.paging import FRAME_4M, PTE_G, PTE_P, PTE_PS, PTE_U, PTE_W

if TYPE_CHECKING:
    from .shadow import ShadowPage

SRC_4M = FRAME_4M | PTE_PS | PTE_G | PTE_U | PTE_W | PTE_P   # what a "4m" table copies


class OutOfSyncTables:
    """The synchronisation of ``ShadowTables`` with the guest's tables."""

    def mark_unsync(self, gppn: int) -> int:
        """oos policy: let ``gppn`` be written freely until the next resync.
        The shadow entries built from it go now: from here on the guest may
        rewrite its entries unseen, and natively a use of va that the TLB
        does not hold walks the rewritten entry -- so must the shadow (it
        refills from the guest's entry on demand).  The translations the TLB
        holds stay, as they do natively, until an invalidation event.
        Returns the entries dropped."""
        self.unsync.add(gppn)
        self.unsynced += 1
        return self._zap_built_from(gppn)

    def _zap_built_from(self, gppn: int) -> int:
        """Drop the entries of every shadow built from guest table ``gppn``."""
        n = 0
        for key in sorted(self.tracked.get(gppn, ())):
            sp = self.pages.get(key)
            if sp is not None:
                n += self.zap(sp)
        return n

    def resync(self) -> int:
        """Bring every out-of-sync table page back in sync: drop the entries
        of its shadows (they refill from the guest's tables on demand) and
        protect it again.  Returns the entries dropped."""
        n = 0
        for gppn in sorted(self.unsync):
            n += self._zap_built_from(gppn)
            self.resyncs += 1
        pages = sorted(self.unsync)
        self.unsync.clear()
        for gppn in pages:
            if gppn in self.tracked:
                self._protect(gppn)
        return n

    def sync_entries(self, gppn: int, changed: list[int]) -> int:
        """The guest changed entries ``changed`` of table page ``gppn``: drop
        the shadow entries that were built from them."""
        n = 0
        for key in sorted(self.tracked.get(gppn, ())):
            sp = self.pages.get(key)
            if sp is None:
                continue
            for idx in changed:
                if sp.entry(idx) & PTE_P:
                    self._clear(sp, idx)
                    n += 1
        return n

    def drop_va(self, root: ShadowPage, va: int, guest_pt: int | None = None) -> int:
        """INVLPG under oos: drop what the shadow caches for ``va`` -- its
        spte and the spde above it (INVLPG invalidates the cached directory
        entry too; the guest may have changed it).  ``guest_pt``: the ppn of
        the guest page table now mapping va, whose shadow may hold an spte for
        it even while no spde links it.  Returns entries dropped."""
        pdx, ptx = (va >> 22) & 0x3FF, (va >> 12) & 0x3FF
        n = 0
        if guest_pt is not None:
            sp = self.pages.get(("pt", guest_pt))
            if sp is not None and sp.entry(ptx) & PTE_P:
                self._clear(sp, ptx)
                n += 1
        spde = root.entry(pdx)
        if not spde & PTE_P:
            return n
        child = self.by_mpn.get(spde >> 12)
        if child is not None and child.role == "4m":
            n += child.present     # a guest 4 MiB page: INVLPG covers all of it
            self.free(child)
            return n + 1
        if child is not None and child.entry(ptx) & PTE_P:
            self._clear(child, ptx)
            n += 1
        self._clear(root, pdx)
        return n + 1

    def sync_directories(self, read32, pse: bool) -> int:
        """INVLPG invalidates every paging-structure cache, whatever its
        address (Intel SDM vol. 3A, 4.10.4.1): drop each spde of an
        out-of-sync guest directory that no longer says what its gpde says
        (``read32(pa)`` reads guest memory).  Returns entries dropped."""
        n = 0
        for gppn in sorted(self.unsync):
            sp = self.pages.get(("pd", gppn))
            if sp is None or not sp.present:
                continue
            for idx in range(1024):
                spde = sp.entry(idx)
                if not spde & PTE_P:
                    continue
                gpde = read32((gppn << 12) | (idx << 2))
                child = self.by_mpn.get(spde >> 12)
                if pse and gpde & PTE_PS:
                    same = (child is not None and child.key == ("4m", gppn, idx)
                            and child.src == gpde & SRC_4M)
                else:
                    same = child is not None and child.key == ("pt", gpde >> 12)
                if not (gpde & PTE_P and same
                        and spde & (PTE_W | PTE_U) == gpde & (PTE_W | PTE_U)):
                    self._clear(sp, idx)
                    n += 1
        return n
