"""Mutant: RETRY without writing the spte (step 4)."""
from emu.vmm.api import PfResult
from emu.vmm.builtin import BuiltinShadowVmm


class NoFill(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        if self.hw.guest.paging and exit.write:
            walk = self.walk_guest(exit)
            if not walk.fault:
                return PfResult.RETRY
        return super().handle_page_fault(exit)
