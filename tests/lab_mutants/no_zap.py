"""Mutant: a guest page-table write is emulated, but the shadow entries
made from what it changed stay (no zap)."""
from emu.vmm.builtin import BuiltinShadowVmm


class NoZap(BuiltinShadowVmm):
    def sync_written(self, ppn, changed, before):
        return 0
