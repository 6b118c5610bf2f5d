"""The built-in shadow-paging VMM, written against the VMM API (``api.py``)
like any student's: the page-fault path (``page_fault.py``), the writes it
lets through once (``emulate.py``), the control-register and INVLPG exits
(``control.py``), and the host's reclaim hooks (here).

Its shadow policies (``--shadow-policy``), two choices combined:

    trace   every shadowed guest table page stays write-protected; a write
            to it is emulated and the affected shadow entries dropped
    oos     the first write to a shadowed table page unprotects it, drops
            the shadow entries built from it and marks it out of sync; it
            is resynced at every invalidation event (docs/design.md)
    cache   on a guest CR3 load keep every shadow, switch roots
    drop    on a guest CR3 load free every shadow and start again
"""

from __future__ import annotations

from .api import ShadowVmm
from .control import ControlPath
from .emulate import Emulation
from .page_fault import PageFaultPath


class BuiltinShadowVmm(PageFaultPath, Emulation, ControlPath, ShadowVmm):
    """The reference VMM: every lab level, every policy."""

    name = "the built-in VMM"

    def __init__(self, hw, policy: str = "trace-cache"):
        super().__init__(hw, policy)
        self.large_regions: set[int] = set()   # pdx of guest 4 MiB pages shadowed
        self.phys_root = None

    def start(self) -> None:
        self.phys_root, _ = self.hw.shadow.ensure(("phys-pd", 0))
        self.hw.tlb.load_root(self.phys_root)

    # --- the host's hooks (reclaim and sharing) -------------------------------------
    def evictable(self, ppn: int, mpn: int) -> bool:
        return ppn not in self.hw.shadow.tracked

    def referenced(self, ppn: int, mpn: int) -> bool:
        used = False
        for sp, idx in self.hw.shadow.sptes_mapping(mpn):
            if self.hw.shadow.test_and_clear_accessed(sp, idx):
                used = True
        if used:
            self.hw.tlb.detach_page(ppn, mpn)   # so that the next use sets A again
        return used

    def unmap_page(self, ppn: int, mpn: int) -> None:
        self.hw.shadow.drop_mappings(mpn)
        self.hw.tlb.forget_page(mpn)

    def shrink_tables(self, enough) -> int:
        # Every step finds its shadow pages anew (``ensure``, ``get``), and
        # the emulation checks that the page it forced is still there.
        return self.hw.shadow.shrink({self.hw.root, self.phys_root}, enough)


__all__ = ["BuiltinShadowVmm"]
