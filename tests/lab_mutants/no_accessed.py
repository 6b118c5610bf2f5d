"""Mutant: step 2 reads the guest's tables without the hardware's A/D
updates."""
from emu.hw import paging
from emu.vmm.builtin import BuiltinShadowVmm


class _Quiet:
    def __init__(self, hw):
        self.read32 = hw.guest.read32

    def write32(self, pa, value):
        pass


class NoAccessed(BuiltinShadowVmm):
    def walk_guest(self, exit):
        g = self.hw.guest
        if not g.paging:
            return None
        return paging.walk(_Quiet(self.hw), g.cr3, exit.va, write=exit.write, user=exit.user,
                           fetch=exit.fetch, wp=g.wp, pse=g.pse)
