"""Mutant: a handler that raises once guest paging is on."""
from emu.vmm.builtin import BuiltinShadowVmm


class Raises(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        if self.hw.guest.paging:
            pages = {}
            return pages[exit.va]
        return super().handle_page_fault(exit)
