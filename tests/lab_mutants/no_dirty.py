"""Mutant: sptes writable while the gpte is clean -- no D emulation (step 4)."""
from emu.hw.paging import PTE_W
from emu.vmm.builtin import BuiltinShadowVmm


class NoDirty(BuiltinShadowVmm):
    def fill_shadow(self, va, walk, ppn, mpn, force=False):
        table, idx, spte = super().fill_shadow(va, walk, ppn, mpn, force)
        gpte = walk.levels[-1].value_after if walk is not None else 0
        if gpte & PTE_W and not force and ppn not in self.hw.shadow.tracked:
            spte = self.hw.shadow.set_spte(table, idx, mpn, gpte, ppn, True)
        return table, idx, spte
