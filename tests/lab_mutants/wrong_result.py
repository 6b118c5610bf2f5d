"""Mutant: the handler does the right work but says RETRY after injecting
a true fault or emulating a write."""
from emu.vmm.api import PfResult
from emu.vmm.builtin import BuiltinShadowVmm

SAYS = {PfResult.INJECT: PfResult.RETRY, PfResult.EMULATE: PfResult.RETRY}


class WrongResult(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        result = super().handle_page_fault(exit)
        return SAYS.get(result, result)
