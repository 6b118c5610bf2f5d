"""Mutant: a CR3 load is recorded, but the hardware keeps walking the
shadow of the old directory."""
from emu.vmm.builtin import BuiltinShadowVmm


class StaleRoot(BuiltinShadowVmm):
    def handle_cr3_write(self, exit):
        if not self.hw.guest.paging:
            return super().handle_cr3_write(exit)
        self.hw.guest.cr3 = exit.value
