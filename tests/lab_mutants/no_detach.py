"""Mutant (level 7): ``referenced`` clears the A bits but leaves the TLB's
entries to the page: the guest's next use hits the TLB, sets no A bit, and
the page looks unused to the next call while it is in use."""
from emu.vmm.builtin import BuiltinShadowVmm


class NoDetach(BuiltinShadowVmm):
    def referenced(self, ppn, mpn):
        used = False
        for sp, idx in self.hw.shadow.sptes_mapping(mpn):
            if self.hw.shadow.test_and_clear_accessed(sp, idx):
                used = True
        return used
