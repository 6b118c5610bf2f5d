"""The shadow page-fault path, top to bottom (the built-in VMM's).

A #PF exit under shadow paging is the lecture's six steps; this module is
steps 2 to 5, in the order they happen (KVM's ``FNAME(page_fault)`` in
``paging_tmpl.h`` reads the same way)::

    handle_page_fault(exit) -> PfResult     the exit carries va, error code, eip
                                            and the shadow walk that faulted (step 1)
        walk = walk_guest(exit)             step 2: gpde, gpte, rights; A/D set
        fault = classify(exit, walk, ppn)   step 3: TRUE | HIDDEN | DIRTY | TRACING |
                                                    UNSYNC | WP_EMULATE | COW
        TRUE        -> inject_true_fault    #PF into the guest's handler: INJECT
        TRACING,
        WP_EMULATE  -> emulate_write        (emulate.py): EMULATE
        mpn = back_page(ppn)                step 3: the PMap's machine page
        fill_shadow(va, walk, ppn, mpn)     step 4: spde and spte, guest A/D exact
        return RETRY                        step 5: the instruction restarts;
                                            the hardware's walk fills the TLB (step 6)

The hardware's side -- step 1, the walk of the shadow that faulted, and
step 6, the restart's walk and TLB fill -- is ``hw/mmu.py``'s.
"""

from __future__ import annotations

from ..hw.exits import PageFaultExit
from ..hw.paging import PTE_U, PTE_W, Walk, pdx, ptx
from .api import Fault, PfResult


class PageFaultPath:
    """The built-in VMM's #PF exit (a part of ``BuiltinShadowVmm``)."""

    def handle_page_fault(self, exit: PageFaultExit) -> PfResult:
        va, write = exit.va, exit.write
        if self.hw.shadow.stale:
            stale = self.stale_hit(va, write, exit.user)
            if stale is not None:
                # Natively a TLB hit: no walk, no A/D; the write goes to the old page.
                return self.emulate_write(Fault.TRACING, va, None, stale[2] >> 12, stale)
        walk = self.walk_guest(exit)                            # step 2
        if walk is not None and walk.fault:
            return self.inject_true_fault(va, walk.error_code)  # step 3: TRUE
        ppn = walk.frame >> 12 if walk is not None else va >> 12
        if walk is None:
            self.hw.guest.check(ppn)       # past guest RAM: a bus error, as natively
        fault = self.classify(exit, walk, ppn)                  # step 3
        if fault in (Fault.TRACING, Fault.WP_EMULATE):
            return self.emulate_write(fault, va, walk, ppn)
        self.hw.classified(fault, va, ppn=ppn, write=write, user=exit.user)
        mpn = self.back_page(ppn, va, write)                    # step 3: the PMap
        spte = self.fill_shadow(va, walk, ppn, mpn)[2]          # step 4
        self.hw.filled(va, mpn, spte)
        return PfResult.RETRY                                   # step 5

    # --- step 2 ---------------------------------------------------------------------
    def walk_guest(self, exit: PageFaultExit) -> Walk | None:
        """The guest's walk of the faulting va for the same access (None
        while guest paging is off: then pa = va, physical mode)."""
        guest = self.hw.guest
        if not guest.paging:
            return None
        return guest.walk(exit.va, write=exit.write, user=exit.user, fetch=exit.fetch)

    # --- step 3 ---------------------------------------------------------------------
    def classify(self, exit: PageFaultExit, walk: Walk | None, ppn: int) -> Fault:
        """The guest allows the access (its walk did not fault): why did the
        shadow refuse it?  (Unsyncing a table page happens here: the page
        is let go out of sync before its first write goes through.)"""
        shadow = self.hw.shadow
        write = exit.write
        if write and ppn in shadow.tracked and shadow.tracing:
            return Fault.TRACING            # a write to a write-protected guest table
        if write and walk is not None and not walk.writable:
            # CR0.WP=0 through a read-only gpte: no spte may let it write (a
            # guest table written so stays in sync: unsyncing it would fault
            # again forever).
            return Fault.WP_EMULATE
        if write and ppn in shadow.tracked:
            shadow.mark_unsync(ppn)
            mpn = self.hw.pmap.mpn(ppn)
            if mpn is not None:
                shadow.drop_mappings(mpn)   # they refill writable on demand
            return Fault.UNSYNC
        if write and self.hw.pmap.is_shared(ppn):
            return Fault.COW                # the guest may write; the VMM shares the page
        if write and exit.walk is not None and exit.walk.fault and exit.present:
            return Fault.DIRTY              # the spte was there, read-only: D was clear
        return Fault.HIDDEN

    def inject_true_fault(self, va: int, error_code: int) -> PfResult:
        """The guest's own tables deny the access: its #PF, with the error
        code its walk gave.  The #PF invalidates the guest's TLB entries and
        cached directory entry for va (SDM 4.10.4.1): the shadow forgets
        what they held."""
        self.hw.classified(Fault.TRUE, va, error_code=error_code)
        self.hw.tlb.drop_page(va)
        self.invalidate_page(va, pde_caches=False)
        self.hw.guest.inject_page_fault(va, error_code)
        return PfResult.INJECT

    def back_page(self, ppn: int, va: int, write: bool) -> int:
        """The PMap's machine page for ``ppn`` (allocated and zeroed if
        unbacked, read back if swapped, copied if shared and written)."""
        return self.hw.pmap.obtain(ppn, va, write)

    # --- step 4 ---------------------------------------------------------------------
    def fill_shadow(self, va: int, walk: Walk | None, ppn: int, mpn: int,
                    force: bool = False):
        """Write the spde and spte that map ``va`` -> ``mpn``; returns the
        shadow table, the index and the spte.  The spte copies the gpte's
        U/S and G; it lets the guest write only if the gpte does AND its D
        bit is already set (so the first write exits and sets D) AND the
        page is not a shadowed guest table -- unless ``force`` (the VMM lets
        one instruction through while it emulates)."""
        shadow = self.hw.shadow
        root = self.hw.root
        shared = self.hw.pmap.is_shared(ppn)
        dx, tx = pdx(va), ptx(va)
        if walk is None:
            child, _ = shadow.ensure(("phys-pt", dx))
            shadow.link(root, dx, child, PTE_W | PTE_U)
            return child, tx, shadow.set_spte(child, tx, mpn, PTE_U, ppn, not shared, force)
        gpde = walk.levels[0].value_after
        if walk.large:
            key = ("4m", self.hw.guest.cr3 >> 12, dx)
            child = shadow.get(key)
            if child is not None and child.src != shadow.src_4m(gpde):
                shadow.free(child)      # built from another gpde: start again
            child, _ = shadow.ensure(key)
            child.src = shadow.src_4m(gpde)
            gpte = gpde
            self.large_regions.add(dx)
        else:
            child, _ = shadow.ensure(("pt", gpde >> 12))
            gpte = walk.levels[1].value_after
        # Forcing (emulation): the spde must let the write through too.
        shadow.link(root, dx, child, gpde | (PTE_W if force else 0))
        writable = bool(gpte & PTE_W) and walk.dirty and not shared
        return child, tx, shadow.set_spte(child, tx, mpn, gpte, ppn, writable, force)
