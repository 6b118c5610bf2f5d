"""Mutant: a handler that calls os._exit() once guest paging is on (which
would end the grader silently, with status 0)."""
import os

from emu.vmm.builtin import BuiltinShadowVmm


class OsExits(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        if self.hw.guest.paging:
            os._exit(0)
        return super().handle_page_fault(exit)
