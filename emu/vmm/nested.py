"""Nested paging, the VMM's side: the nested table and its one exit.

The VMM owns a nested table (pa -> ma, IA-32 format) per VM in machine
memory.  It starts empty; each guest-physical page gets its npte on the
first EPT violation that touches it, from the PMap (allocating and zeroing a
machine page if none backs it).  Guest #PF, CR3 writes and INVLPG do not
exit: the guest manages its own tables and TLB, the hardware walks both
dimensions.  So the fault story is shorter than shadow paging's:

    1  the hardware's 2D walk finds no nested entry: EPT violation, VM exit
    2  (the VMM needs no guest walk: the exit names the guest-physical address)
    3  the PMap gives the machine page (allocated and zeroed if unbacked)
    4  the VMM writes the npte (and the npde above it)
    5  VM entry: the instruction restarts
    6  the 2D walk succeeds and fills the TLB with va -> ma
"""

from __future__ import annotations

from struct import Struct

from ..hw.exits import EptViolationExit
from ..hw.paging import PTE_A, PTE_P, PTE_U, PTE_W
from .pmap import VMM_OWNER, MachineMemory
from .runtime import RESUMED, Monitor, Outcome

_U32 = Struct("<I")
NESTED_RIGHTS = PTE_P | PTE_W | PTE_U      # guest RAM is all readable and writable


class NestedTables:
    """One VM's nested table: a page directory and page tables, VMM-owned."""

    STATS = {
        "nested_pages": "machine pages holding the nested table",
        "nptes": "nested entries written",
    }

    def __init__(self, machine: MachineMemory):
        self.machine = machine
        self.root = machine.alloc(VMM_OWNER)
        self.tables: dict[int, int] = {}      # pdx -> mpn of its nested page table
        self.nptes = 0

    @property
    def root_ma(self) -> int:
        return self.root << 12

    def _page(self, mpn: int) -> bytearray:
        return self.machine.mem.page(mpn)

    def lookup(self, ppn: int) -> int | None:
        """The mpn the nested table maps ``ppn`` to, or None."""
        pt = self.tables.get(ppn >> 10)
        if pt is None:
            return None
        npte = _U32.unpack_from(self._page(pt), (ppn & 0x3FF) * 4)[0]
        return npte >> 12 if npte & PTE_P else None

    def map(self, ppn: int, mpn: int, writable: bool = True) -> int:
        """npte(ppn) := mpn (creating the nested page table if needed);
        read-only unless ``writable``; returns the npte written."""
        pdx = ppn >> 10
        pt = self.tables.get(pdx)
        if pt is None:
            pt = self.tables[pdx] = self.machine.alloc(VMM_OWNER)
            _U32.pack_into(self._page(self.root), pdx * 4, (pt << 12) | NESTED_RIGHTS)
        npte = (mpn << 12) | NESTED_RIGHTS
        if not writable:
            npte &= ~PTE_W
        _U32.pack_into(self._page(pt), (ppn & 0x3FF) * 4, npte)
        self.nptes += 1
        return npte

    def unmap(self, ppn: int) -> None:
        pt = self.tables.get(ppn >> 10)
        if pt is not None:
            _U32.pack_into(self._page(pt), (ppn & 0x3FF) * 4, 0)

    def test_and_clear_accessed(self, ppn: int) -> bool:
        """The npte's A bit (set by the hardware's walks), cleared."""
        pt = self.tables.get(ppn >> 10)
        if pt is None:
            return False
        page = self._page(pt)
        npte = _U32.unpack_from(page, (ppn & 0x3FF) * 4)[0]
        if npte & PTE_A:
            _U32.pack_into(page, (ppn & 0x3FF) * 4, npte & ~PTE_A)
            return True
        return False

    def mark_accessed(self, ppn: int) -> None:
        """Set the npte's A bit (a use the hardware's walk did not make)."""
        pt = self.tables.get(ppn >> 10)
        if pt is not None:
            page = self._page(pt)
            npte = _U32.unpack_from(page, (ppn & 0x3FF) * 4)[0]
            if npte & PTE_P:
                _U32.pack_into(page, (ppn & 0x3FF) * 4, npte | PTE_A)

    def entries(self):
        """(ppn, npte) of every present nested entry."""
        for pdx, pt in sorted(self.tables.items()):
            page = self._page(pt)
            for i in range(1024):
                npte = _U32.unpack_from(page, i * 4)[0]
                if npte & PTE_P:
                    yield (pdx << 10) | i, npte

    def free_all(self) -> None:
        """Give every page of the table back (the VM has ended)."""
        for mpn in (*self.tables.values(), self.root):
            self.machine.free(mpn)
        self.tables.clear()
        self.root = None

    def stats(self) -> dict:
        return {"nested_pages": len(self.tables) + (self.root is not None),
                "nptes": self.nptes}


class NestedMonitor(Monitor):
    """The VMM's per-vCPU context for nested paging."""

    FAULT_EXIT = EptViolationExit
    STATS = {
        "exits": "VM exits, by reason (npf: EPT violations)",
        "faults": "EPT violations handled (nested faults)",
        "cycles": "simulated cycles the VMM spent, by step",
    }

    def __init__(self, *, walker, **collaborators):
        super().__init__(**collaborators)
        self.nested = NestedTables(self.machine)
        self.walker = walker
        walker.ncr3 = self.nested.root_ma
        self.faults = {"nested": 0}
        self.handlers[EptViolationExit] = self._ept_violation

    def step1(self, exit: EptViolationExit) -> None:
        # The 2D walk that found no nested entry, reference by reference.
        self.emit("nested_walk", va=exit.va, step=1, gpa=exit.gpa,
                  error_code=exit.error_code, grid=[list(r) for r in exit.grid])

    def _ept_violation(self, exit: EptViolationExit) -> Outcome:
        gpa, va = exit.gpa, exit.va
        ppn = gpa >> 12
        self.pmap.check(ppn)        # past guest RAM: a bus error, as natively
        self.faults["nested"] += 1
        bus = self.bus
        if bus.active:
            bus.emit("nested_fault", va=va, step=3, gpa=gpa, ppn=ppn)
        mpn = self.obtain(ppn, va, exit.error_code & 2 != 0)
        npte = self.nested.map(ppn, mpn, ppn not in self.pmap.shared)
        self.walker.forget(ppn)
        self.spend("fill_nested", self.costs.vmm_fill_shadow)
        if bus.active:
            bus.emit("nested_fill", va=va, step=4, ppn=ppn, mpn=mpn, npte=npte)
        self.mmu.restart_vpn = va >> 12          # step 5 (expect_restart)
        return RESUMED

    def release_tables(self) -> None:
        self.nested.free_all()

    # --- the host's hooks: reclaim and sharing -----------------------------------------
    def evictable(self, ppn: int, mpn: int) -> bool:
        return True        # the hardware walks guest tables: any page may go

    def referenced(self, ppn: int, mpn: int) -> bool:
        if self.nested.test_and_clear_accessed(ppn):
            self.walker.forget(ppn)
            self.detach(ppn, mpn)      # so that the next use exits and sets A again
            self.mmu.forget_pn(mpn)
            return True
        return False

    def unmap_page(self, ppn: int, mpn: int) -> None:
        self.nested.unmap(ppn)
        self.walker.forget(ppn)
        self.detach(ppn, mpn)          # the guest's TLB keeps what it holds
        self.mmu.forget_pn(mpn)

    def page_back(self, ppn: int, mpn: int) -> None:
        self.nested.mark_accessed(ppn)

    def stats(self) -> dict:
        out = super().stats()
        out.update(faults=dict(self.faults), nested_table=self.nested.stats(),
                   policy="nested")
        return out
