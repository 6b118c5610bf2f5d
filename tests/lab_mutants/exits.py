"""Mutant: a handler that calls sys.exit() once guest paging is on."""
import sys

from emu.vmm.builtin import BuiltinShadowVmm


class Exits(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        if self.hw.guest.paging:
            sys.exit(0)
        return super().handle_page_fault(exit)
