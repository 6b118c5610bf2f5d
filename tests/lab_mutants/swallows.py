"""Mutant: an INVLPG handler that never returns and catches every
Exception inside its loop (the time limit must still stop it)."""
from emu.vmm.builtin import BuiltinShadowVmm


class Swallows(BuiltinShadowVmm):
    def handle_invlpg(self, exit):
        n = 0
        while True:
            try:
                n += 1
            except Exception:  # noqa: BLE001
                n = 0
