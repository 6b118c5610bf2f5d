"""VMs on the ``Host``: attached, leaving the machine when they end, and
giving their VMM's tables back when nothing else can go (a mixin).

``VmsMixin``: ``attach`` (a VM with its PMap and its VMM's hooks),
``detach`` (the VM has ended: everything it held comes back) and
``_shrink_tables`` (no guest page can go: the VMMs free tables their
hardware is not walking).  ``host.py`` holds the rest of the host (its
state, allocation, reclaim and the swap disk); see its module doc.
"""

from __future__ import annotations

from dataclasses import dataclass

from .pmap import MAPPED, READING_IN, PMap


@dataclass(eq=False)
class Guest:
    """What the host knows of one VM: its PMap, its VMM's reclaim hooks, its
    trace bus, and whether its run is over."""

    name: str
    pmap: PMap
    hooks: object          # evictable(ppn, mpn), referenced(ppn, mpn), unmap_page(ppn, mpn),
                           # shrink_tables(enough), power_off()
    bus: object
    finished: object       # callable() -> bool


class VmsMixin:
    """The VMs of a ``Host`` (see ``host.py`` for its state)."""

    def attach(self, name: str, pmap: PMap, hooks, bus, finished) -> None:
        self.vms[name] = Guest(name, pmap, hooks, bus, finished)
        pmap.host = self

    def detach(self, name: str) -> int:
        """VM ``name`` has ended (powered off, crashed, out of budget): it
        leaves the machine, and every machine page it held comes back --
        private pages, its part of shared ones, pages with its swap I/O in
        flight (the transfer goes on and its end does nothing) -- with its
        swap slots; and first its VMM's own tables (``power_off``, the
        VMM's fourth hook: the hardware keeps no translation either).  A
        host frees a VM's memory when it ends; kept, a finished VM's pages
        could be neither reclaimed nor shared, and the VMs still running
        ran out of memory beside them.  Returns the pages freed."""
        machine = self.machine
        before = machine.free_pages()
        vm = self.vms.pop(name)
        vm.hooks.power_off()
        self.release(name)
        pmap, store = vm.pmap, self.disk.store
        for _, io in sorted(pmap.in_flight.items()):
            io.settled = True
            if io.kind == READING_IN:
                machine.set_state(io.mpn, MAPPED)
                store.pop(io.key, None)
            machine.free(io.mpn)
        for ppn in sorted(pmap.shared):
            mpn = pmap.mpn_of[ppn]
            refs = self.sharers[mpn]
            refs.discard((name, ppn))
            if not refs:
                self._drop_shared(mpn)
        for mpn in sorted(pmap.ppn_of):
            machine.free(mpn)
        for key in pmap.swapped.values():
            del store[key]
        for table in (pmap.mpn_of, pmap.ppn_of, pmap.shared, pmap.shared_mpns,
                      pmap.swapped, pmap.in_flight):
            table.clear()
        pmap.version += 1
        freed = machine.free_pages() - before
        self.released += freed
        self._checked()
        return freed

    def _shrink_tables(self) -> int:
        """No guest page can go and the reserve is reached: ask the VMMs to
        free tables their hardware is not walking (as KVM's shrinker does
        with shadow pages) until more than the reserve is free -- the VMs in
        turn, from the one after the last asked.  A shadow table's guest
        page table is then no longer protected, and may go too.  Returns
        the pages freed."""
        names = sorted(self.vms)
        if not names:
            return 0
        start = self.shrink_next % len(names)
        self.shrink_next += 1
        machine, reserve = self.machine, self.reserve
        enough = lambda: machine.free_pages() > reserve   # noqa: E731
        freed = 0
        for name in names[start:] + names[:start]:
            if enough():
                break
            freed += self.vms[name].hooks.shrink_tables(enough)
        self.tables_shrunk += freed
        return freed
