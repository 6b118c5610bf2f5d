"""What the MMU drops and downgrades when a mapping changes (a mixin).

``InvalidationMixin``: INVLPG and the other ways a translation leaves the
TLBs and the fast maps (``invlpg``, ``invlpg_range``, ``drop_page``,
``flush_all``, ``forget_pn``), the VMM taking a write permission back
(``downgrade``, ``downgrade_pn``, ``downgrade_gpn``), the code-page bookkeeping of the fast
write map (``code_written``, ``code_page_used``), and the TLBs' ``on_drop``
hooks that keep the fast maps a view of the TLBs.  None of it is on the
per-access path.  ``mmu.py`` holds the rest of the MMU (its state, the
translation and the hit path); see its module doc.
"""

from __future__ import annotations

from .memory import PAGE_SHIFT
from .tlb import TlbEntry


class InvalidationMixin:
    """Invalidation for an ``Mmu`` (see ``mmu.py`` for its state)."""

    # --- invalidation -------------------------------------------------------
    def invlpg_range(self, vpn: int, count: int) -> None:
        """Drop the translations of ``count`` pages from ``vpn`` (a guest
        INVLPG of a 4 MiB page the shadow maps with 4 KiB entries)."""
        for t in self._tlbs():
            for e in t.valid_entries():
                if vpn <= e.vpn < vpn + count:
                    t.invlpg(e.vpn)
                    t.invlpgs -= 1
        for v in range(vpn, vpn + count):
            self._forget_vpn(v)

    def drop_page(self, va: int) -> None:
        """What a #PF at ``va`` invalidates (Intel SDM vol. 3A, 4.10.4.1): every
        TLB entry for its page, in both TLBs, and every 4 KiB entry
        splintered from a 4 MiB page holding it; counted as no INVLPG."""
        vpn = (va & 0xFFFFFFFF) >> PAGE_SHIFT
        if vpn >> 10 in self.split_regions:
            self.split_regions.discard(vpn >> 10)
            self.invlpg_range(vpn & ~0x3FF, 1024)
        itlb, dtlb = self.itlb, self.dtlb
        if itlb.probe(vpn) is not None:
            itlb.invlpg(vpn)
            itlb.invlpgs -= 1
        if dtlb is not itlb and dtlb.probe(vpn) is not None:
            dtlb.invlpg(vpn)
            dtlb.invlpgs -= 1
        self._forget_vpn(vpn)

    def invlpg(self, va: int) -> None:
        vpn = (va & 0xFFFFFFFF) >> PAGE_SHIFT
        if vpn >> 10 in self.split_regions:
            self.split_regions.discard(vpn >> 10)
            self.invlpg_range(vpn & ~0x3FF, 1024)
        self.itlb.invlpg(vpn)
        if self.dtlb is not self.itlb:
            self.dtlb.invlpg(vpn)
        # Paging off: nothing cached in the TLB, but fast maps may hold it.
        self._forget_vpn(vpn)

    def _forget_vpn(self, vpn: int) -> None:
        """No fast map answers for ``vpn`` any more."""
        self.rfast.pop(vpn, None)
        self.wfast.pop(vpn, None)
        self.cwfast.pop(vpn, None)
        self.ifast.pop(vpn, None)

    def flush_all(self) -> None:
        """Drop every TLB entry, global ones too (CR4.PGE toggled)."""
        for t in {id(self.itlb): self.itlb, id(self.dtlb): self.dtlb}.values():
            t.flush(keep_global=False)
        self.reset_fast()

    def _tlbs(self):
        return (self.itlb,) if self.itlb is self.dtlb else (self.itlb, self.dtlb)

    def downgrade(self, vpn: int) -> None:
        """Make the cached translation of ``vpn`` read-only (the VMM took a
        write permission back; the next write re-walks)."""
        for t in self._tlbs():
            e = t.probe(vpn)
            if e is not None:
                e.writable = False
        self.wfast.pop(vpn, None)
        self.cwfast.pop(vpn, None)

    def downgrade_pn(self, pn: int) -> None:
        """Make every cached translation to page ``pn`` read-only."""
        for t in self._tlbs():
            for e in t.entries_to(pn):
                e.writable = False
                self.wfast.pop(e.vpn + (pn - e.pn), None)
                self.cwfast.pop(e.vpn + (pn - e.pn), None)

    def downgrade_gpn(self, gpn: int) -> None:
        """Make read-only every cached translation detached from the guest's
        page ``gpn`` (``detach_pn``): reattached, it may not write."""
        for t in self._tlbs():
            for e in t.valid_entries():
                if e.gpn == gpn and e.writable:
                    e.writable = False

    def forget_pn(self, pn: int) -> None:
        """Page ``pn`` left its owner: no translation or code may use it."""
        for t in self._tlbs():
            for e in t.entries_to(pn):
                t.invlpg(e.vpn)
                t.invlpgs -= 1
        blocks = self.code.get(pn)
        if blocks:
            blocks.clear()

    def detach_pn(self, pn: int, gpn: int) -> None:
        """The host takes page ``pn``, the guest's page ``gpn``: every 4 KiB
        translation the TLBs cache to it stays where it is -- the guest's
        TLB still holds it, as it may until an INVLPG or a flush, even when
        the guest's tables say otherwise by then -- but without its page.
        An access it allows is a VM exit (``HPF``) that brings the page back
        (``reattach``); one it does not walks, as a miss.  A large entry
        goes (it maps 1,024 pages at once)."""
        for t in self._tlbs():
            for e in t.entries_to(pn):
                if e.large:
                    t.invlpg(e.vpn)
                    t.invlpgs -= 1
                    continue
                e.pn, e.page, e.gpn = -1, None, gpn
                self._forget_vpn(e.vpn)
        blocks = self.code.get(pn)
        if blocks:
            blocks.clear()

    def reattach(self, vpn: int, gpn: int, pn: int, shared: bool = False) -> None:
        """Guest page ``gpn`` is back in page ``pn``: the detached entries
        of ``vpn`` that stand for it translate to it again -- for reads
        only while ``pn`` is a shared page (a write through them exits
        again, and the host gives the guest page its own copy)."""
        for t in self._tlbs():
            e = t.probe(vpn)
            if e is not None and e.gpn == gpn:
                e.pn, e.page = pn, self.mem.page(pn)
                e.gpn = gpn if shared else None

    def code_written(self, pn: int) -> None:
        """Page ``pn`` was written behind the CPU's back (VMM, loader)."""
        self._wrote(pn)

    def code_page_used(self, pn: int) -> None:
        """Translated code now exists for page ``pn``: writes to it must take
        the slow path, which invalidates the translations."""
        wfast = self.wfast
        if not wfast:
            return
        # Every way to write the page fast holds its bytes (a TLB entry's
        # fill put them there): a search of the fast map, not of the TLBs.
        page = self.mem.pages.get(pn)
        if page is not None:
            for vpn in [vpn for vpn, held in wfast.items() if held is page]:
                del wfast[vpn]

    def _drop_i(self, e: TlbEntry) -> None:
        if e.large:
            for vpn in range(e.vpn, e.vpn + 1024):
                self.ifast.pop(vpn, None)
        else:
            self.ifast.pop(e.vpn, None)

    def _drop_d(self, e: TlbEntry) -> None:
        if e.large:
            for vpn in range(e.vpn, e.vpn + 1024):
                self.rfast.pop(vpn, None)
                self.wfast.pop(vpn, None)
                self.cwfast.pop(vpn, None)
        else:
            self.rfast.pop(e.vpn, None)
            self.wfast.pop(e.vpn, None)
            self.cwfast.pop(e.vpn, None)

    def _drop_both(self, e: TlbEntry) -> None:
        self._drop_i(e)
        self._drop_d(e)

    # A flush that empties a TLB: its whole view goes at once (with paging
    # off a fast map holds pages no TLB entry stands for: they are made
    # again on their next use, at no cost the guest can see).
    def _flushed_i(self) -> None:
        self.ifast.clear()

    def _flushed_d(self) -> None:
        self.rfast.clear()
        self.wfast.clear()
        self.cwfast.clear()

