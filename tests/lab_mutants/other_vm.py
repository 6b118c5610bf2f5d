"""Mutant: once another VM has pages, a fault is backed by one of them
(isolation).  It reaches the host through private attributes: the API
gives a VMM no way to name another VM's pages."""
from emu.vmm.builtin import BuiltinShadowVmm


class OtherVm(BuiltinShadowVmm):
    def back_page(self, ppn, va, write):
        mpn = super().back_page(ppn, va, write)
        host = self.hw._mon.host
        me = self.hw._mon.name
        for name, vm in sorted(host.vms.items()):
            if name != me and vm.pmap.mpn_of:
                return min(vm.pmap.mpn_of.values())
        return mpn
