"""The built-in VMM's control-register and INVLPG exits, and what each
invalidation event makes it resync (docs/design.md, "Invalidation events").

    CR3 load     switch the hardware to the shadow of the new directory
                 (cache policies keep every shadow; drop policies free them);
                 out-of-sync tables resync; stale records keep only global ones
    CR0 write    PG or WP changed: the whole TLB goes, out-of-sync tables
                 resync; PG: the physical-mode shadow or the guest's
    CR4 write    PSE changed: every shadow goes (the tables mean something
                 else); PSE or PGE: the whole TLB goes, tables resync
    INVLPG       the page's translations go, and under oos every shadow
                 entry that might cache a rewritten guest entry for it
"""

from __future__ import annotations

from ..hw.exits import CrWriteExit, InvlpgExit
from ..hw.paging import CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, PTE_PS, pdx

PAGE_MASK = 0xFFFFF000


class ControlPath:
    """CR3, CR0, CR4 and INVLPG exits (a part of ``BuiltinShadowVmm``)."""

    def handle_cr3_write(self, exit: CrWriteExit) -> None:
        hw = self.hw
        guest, shadow = hw.guest, hw.shadow
        guest.cr3 = exit.value
        dropped = shadow.resync() if not shadow.tracing else 0
        if not shadow.cache_roots:
            shadow.drop_all()
            self.phys_root, _ = shadow.ensure(("phys-pd", 0))
        elif shadow.stale:
            # The TLB keeps only global translations across a CR3 load.
            shadow.forget_stale(keep_global=guest.pge)
        hw.spend("cr3", hw.costs.vmm_flush + dropped * hw.costs.vmm_fill_shadow)
        root = self.set_root()
        hw.emit("cr3_load", guest_cr3=guest.cr3, root=root.mpn, resynced=dropped,
                paging=guest.paging)

    def set_root(self):
        """The hardware's root for the guest's current CR3 (its shadow, or
        the physical-mode one while guest paging is off), loaded."""
        guest = self.hw.guest
        if guest.paging:
            root, _ = self.hw.shadow.ensure(("pd", (guest.cr3 & PAGE_MASK) >> 12))
        else:
            root = self.phys_root
        self.hw.tlb.load_root(root)
        return root

    def handle_cr0_write(self, exit: CrWriteExit) -> None:
        hw = self.hw
        guest, shadow = hw.guest, hw.shadow
        old = guest.cr0
        guest.cr0 = exit.value
        hw.spend("emulate", hw.costs.vmm_emulate)
        if (old ^ exit.value) & (CR0_PG | CR0_WP):
            # Every TLB entry goes (SDM 4.10.4.1; WP too, see docs/design.md).
            hw.tlb.flush()
            shadow.forget_stale()
            if shadow.unsync:
                shadow.resync()
        if (old ^ exit.value) & CR0_PG:
            self.set_root()

    def handle_cr4_write(self, exit: CrWriteExit) -> None:
        hw = self.hw
        guest, shadow = hw.guest, hw.shadow
        old = guest.cr4
        guest.cr4 = exit.value
        hw.spend("emulate", hw.costs.vmm_emulate)
        if (old ^ exit.value) & CR4_PSE:
            # The guest's tables mean something else now: start the shadows again.
            shadow.drop_all()
            self.phys_root, _ = shadow.ensure(("phys-pd", 0))
            self.set_root()
        if (old ^ exit.value) & (CR4_PSE | CR4_PGE):
            # Every TLB entry goes, global ones too (SDM 4.10.4.1).
            hw.tlb.flush()
            shadow.forget_stale()
            if shadow.unsync:
                shadow.resync()
        hw.tlb.set_global_pages(guest.pge)

    def handle_invlpg(self, exit: InvlpgExit) -> None:
        hw = self.hw
        hw.tlb.invlpg(exit.va)
        dropped = self.invalidate_page(exit.va, pde_caches=True)
        hw.spend("invlpg", hw.costs.vmm_flush)
        hw.emit("invlpg", va=exit.va, dropped=dropped)

    def invalidate_page(self, va: int, pde_caches: bool) -> int:
        """The guest's TLB lets go of va's page (an INVLPG, a #PF): the
        shadow drops what stands for it -- the 4 KiB entries of a guest
        4 MiB page holding it, a stale record, and under oos the spte and
        spde built from the guest's possibly rewritten entries; with
        ``pde_caches`` (INVLPG) every out-of-sync spde too.  Returns the
        shadow entries dropped."""
        hw = self.hw
        shadow = hw.shadow
        dx = pdx(va)
        if dx in self.large_regions:
            # A guest 4 MiB page, shadowed (and cached in the TLB) as 4 KiB
            # pages: the guest's one invalidation covers all of them.
            self.large_regions.discard(dx)
            hw.tlb.invlpg_range(dx << 10, 1024)
        if shadow.stale:
            shadow.forget_stale(va >> 12)      # the guest's TLB lets it go
        if shadow.tracing:
            return 0
        # The guest's current PDE names the page table whose shadow may
        # hold the va's entry even when no spde links it right now.
        guest = hw.guest
        gpt = None
        if guest.paging:
            gpde = guest.read32((guest.cr3 & PAGE_MASK) | (dx << 2))
            if gpde & 1 and not (gpde & PTE_PS and guest.pse):
                gpt = gpde >> 12
        dropped = shadow.drop_va(hw.root, va, gpt)
        if pde_caches and shadow.unsync:
            dropped += shadow.sync_directories(guest.read32, guest.pse)
        return dropped
