"""Mutant: a true fault injected without the user bit (step 3)."""
from emu.vmm.builtin import BuiltinShadowVmm


class WrongErrorCode(BuiltinShadowVmm):
    def inject_true_fault(self, va, error_code):
        return super().inject_true_fault(va, error_code & ~4)
