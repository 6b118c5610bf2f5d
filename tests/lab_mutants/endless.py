"""Mutant: an INVLPG handler that never returns."""
from emu.vmm.builtin import BuiltinShadowVmm


class Endless(BuiltinShadowVmm):
    def handle_invlpg(self, exit):
        n = 0
        while True:
            n += 1
