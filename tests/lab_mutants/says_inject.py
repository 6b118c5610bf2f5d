"""Mutant: the handler fills the shadow for a hidden fault but says INJECT."""
from emu.vmm.api import PfResult
from emu.vmm.builtin import BuiltinShadowVmm


class SaysInject(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        result = super().handle_page_fault(exit)
        return PfResult.INJECT if result is PfResult.RETRY else result
