"""Mutant: an spte that maps a machine page the PMap does not give this
VM (isolation)."""
from emu.vmm.builtin import BuiltinShadowVmm


class OtherPage(BuiltinShadowVmm):
    def back_page(self, ppn, va, write):
        mpn = super().back_page(ppn, va, write)
        return mpn + 1 if self.hw.guest.paging else mpn
