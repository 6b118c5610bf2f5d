"""Mutant (level 7): ``referenced`` says every page is in use without
looking at the A bits: the host's CLOCK can never find a cold page."""
from emu.vmm.builtin import BuiltinShadowVmm


class AlwaysUsed(BuiltinShadowVmm):
    def referenced(self, ppn, mpn):
        super().referenced(ppn, mpn)
        return True
