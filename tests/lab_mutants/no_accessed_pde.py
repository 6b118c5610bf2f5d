"""Mutant: step 2 sets A (and D on a write) in the gpte it maps with, but
never in the gpde the walk followed."""
from emu.hw import paging
from emu.hw.paging import PTE_A, PTE_D
from emu.vmm.builtin import BuiltinShadowVmm


class _Quiet:
    def __init__(self, hw):
        self.read32 = hw.guest.read32

    def write32(self, pa, value):
        pass


class PteOnly(BuiltinShadowVmm):
    def walk_guest(self, exit):
        g = self.hw.guest
        if not g.paging:
            return None
        w = paging.walk(_Quiet(self.hw), g.cr3, exit.va, write=exit.write, user=exit.user,
                        fetch=exit.fetch, wp=g.wp, pse=g.pse)
        if not w.fault:
            lv = w.levels[-1]
            g.write32(lv.entry_pa, lv.value | PTE_A | (PTE_D if exit.write else 0))
        return w
