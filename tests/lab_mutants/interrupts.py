"""Mutant: a handler that raises KeyboardInterrupt once guest paging is on."""
from emu.vmm.builtin import BuiltinShadowVmm


class Interrupts(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        if self.hw.guest.paging:
            raise KeyboardInterrupt
        return super().handle_page_fault(exit)
