"""Mutant: step 4 links every spde with R/W and U/S, whatever the gpde
says (a supervisor-only directory entry no longer stops user code)."""
from emu.hw.paging import PTE_P, PTE_U, PTE_W, pdx
from emu.vmm.builtin import BuiltinShadowVmm


class FullRights(BuiltinShadowVmm):
    def fill_shadow(self, va, walk, ppn, mpn, force=False):
        out = super().fill_shadow(va, walk, ppn, mpn, force)
        root, dx = self.hw.root, pdx(va)
        spde = root.entry(dx)
        if spde & PTE_P:
            self.hw.shadow._write(root, dx, spde | PTE_W | PTE_U)
        return out
