"""Mutant: a user access the guest allows is injected as a true fault (step 3)."""
from emu.vmm.builtin import BuiltinShadowVmm


class HiddenAsTrue(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        if exit.user and self.hw.guest.paging:
            walk = self.walk_guest(exit)
            if not walk.fault:
                return self.inject_true_fault(exit.va, exit.error_code | 1)
        return super().handle_page_fault(exit)
