"""Content-based sharing and copy-on-write breaks of the ``Host`` (a mixin).

``SharingMixin``: the periodic scan that maps guest pages with the same
contents (zero pages the common case) to one read-only machine page
(``_sharing``, ``scan``, ``_make_shared``), and the copy-on-write break that
gives a writer its private copy back (``unshare_now``, ``_cow``,
``_drop_shared``), and the reclaim of a shared page (``_shared_victim``,
``_evict_shared``, ``_let_shared_go``).  ``host.py`` holds the rest of the host (its state,
allocation, reclaim and the swap disk); see its module doc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..hw.memory import ZERO_PAGE
from .pmap import MAPPED, SHARED_OWNER, SHARED_PAGE, PMap

if TYPE_CHECKING:
    from .host import Guest


class SharingMixin:
    """Sharing and COW breaks of a ``Host`` (see ``host.py`` for its state)."""

    def unshare_now(self, pmap: PMap, ppn: int) -> int:
        """Give ``ppn`` a private copy of its shared page (a COW break)."""
        vm = self.vms[pmap.name]
        return self._cow(vm, ppn, self.machine.alloc(pmap.name))

    def _cow(self, vm: Guest, ppn: int, mpn: int) -> int:
        """Break ``vm``'s ``ppn`` away from its shared page into ``mpn``."""
        pmap = vm.pmap
        shared = pmap.mpn_of[ppn]
        vm.hooks.unmap_page(ppn, shared)         # this VM's mappings of it go first
        self.machine.mem.page(mpn)[:] = self.machine.mem.page(shared)
        pmap.unbind(ppn)
        pmap.bind(ppn, mpn)
        self.cow_breaks += 1
        if vm.bus.active:
            vm.bus.emit("cow_break", ppn=ppn, shared=shared, mpn=mpn)
        refs = self.sharers[shared]
        refs.discard((vm.name, ppn))
        if not refs:
            self._drop_shared(shared)
        return mpn

    # --- reclaiming a shared page ---------------------------------------------------
    # When the machine is full of shared pages, reclaim must be able to take
    # one: then every sharer's guest page goes to the disk (shared -> free;
    # each guest page shared -> swapped), its mappings zapped first.  The
    # page is read-only while shared -- a write breaks away from it -- so
    # its contents go to the disk while it stays mapped, and the sharers
    # are let go only when the write is done.
    def _shared_victim(self, mpn: int) -> bool:
        """May the CLOCK hand take the shared page ``mpn``?  Not while a
        sharer's mapping was accessed since the hand last passed (the bits
        are cleared as for a private page) or a sharer may not let it go."""
        if mpn in self.pinned:
            return False
        referenced = False
        for name, ppn in sorted(self.sharers[mpn]):
            vm = self.vms.get(name)
            if vm is None or not vm.hooks.evictable(ppn, mpn):
                return False
            referenced |= vm.hooks.referenced(ppn, mpn)
        return not referenced

    def _evict_shared(self, mpn: int):
        """Take the shared page ``mpn`` back from every sharer (a generator):
        the freed mpn, or None when it stopped being shared or was pinned
        while its contents went to the disk.  Its sharers may all break
        away meanwhile and the page be shared again, with other contents:
        the set of references, made anew for each shared page, tells (the
        number alone once sent the old contents to the new sharers' swap
        slots)."""
        data = bytes(self.machine.mem.page(mpn))
        if any(data):
            self.swap_outs += 1
            self.disk.writes += 1
            refs = self.sharers[mpn]
            yield from self.disk.transfer()
            if self.sharers.get(mpn) is not refs or mpn in self.pinned:
                return None
        return self._let_shared_go(mpn, data)

    def _let_shared_go(self, mpn: int, data: bytes) -> int:
        """Every sharer's guest page of ``mpn`` leaves it for the disk (or,
        all zeros, becomes unbacked); then the page is free."""
        refs = sorted(self.sharers[mpn])
        for name, ppn in refs:
            self.vms[name].hooks.unmap_page(ppn, mpn)     # every mapping goes first
        zero = not any(data)
        for name, ppn in refs:
            vm = self.vms[name]
            vm.pmap.unbind(ppn)
            if zero:
                self.zero_dropped += 1
            else:
                key = (name, ppn)
                self.disk.store[key] = data
                vm.pmap.swapped[ppn] = key
            if vm.bus.active:
                vm.bus.emit("reclaim", va=None, ppn=ppn, mpn=mpn, zero=zero)
        self.reclaimed += 1
        self._drop_shared(mpn)
        self._checked()
        return mpn

    def sharing_saved(self) -> int:
        """Machine pages sharing saves right now (each shared page stands for
        as many guest pages as reference it)."""
        return sum(len(refs) - 1 for refs in self.sharers.values())

    def _drop_shared(self, mpn: int) -> None:
        del self.sharers[mpn]
        for digest, m in list(self.by_content.items()):
            if m == mpn:
                del self.by_content[digest]
        self.machine.free(mpn)

    # --- content-based sharing ------------------------------------------------------
    def _sharing(self):
        while any(not vm.finished() for vm in self.vms.values()):
            self.next_scan = int(self.env.now) + self.share_interval
            yield self.env.timeout(self.share_interval)
            hashed = self.scan()
            if hashed:
                yield self.env.timeout(hashed * self.hash_cost)
        self.next_scan = None

    def scan(self) -> int:
        """Share every guest page whose contents equal another's; returns
        the pages hashed."""
        self.scans += 1
        mem = self.machine.mem
        state = self.machine.state
        hashed = 0
        for name, vm in sorted(self.vms.items()):
            if vm.finished():
                continue
            pmap = vm.pmap
            for mpn, ppn in sorted(pmap.ppn_of.items()):
                if pmap.ppn_of.get(mpn) != ppn or state.get(mpn) != MAPPED:
                    continue               # made shared earlier in this scan
                if mpn in self.pinned or not vm.hooks.evictable(ppn, mpn):
                    continue
                page = mem.page(mpn)
                hashed += 1
                zero = page == ZERO_PAGE
                digest = b"zero" if zero else bytes(page)
                shared = self.by_content.get(digest)
                if shared is None:
                    self.by_content[digest] = -mpn - 1      # a candidate, not shared yet
                    continue
                if shared < 0:
                    shared = self._make_shared(-shared - 1)
                    if shared is None:
                        self.by_content[digest] = -mpn - 1
                        continue
                    self.by_content[digest] = shared
                if mem.page(shared) != page:
                    continue
                vm.hooks.unmap_page(ppn, mpn)     # remapped read-only on the next touch
                pmap.unbind(ppn)
                self.machine.free(mpn)
                pmap.bind_shared(ppn, shared)
                self.sharers[shared].add((name, ppn))
                if zero:
                    self.zero_shared += 1
                if vm.bus.active:
                    vm.bus.emit("page_shared", ppn=ppn, mpn=shared, freed=mpn, zero=zero)
        self.by_content = {d: m for d, m in self.by_content.items() if m >= 0}
        self.saved_peak = max(self.saved_peak, self.sharing_saved())
        self._checked()
        return hashed

    def _make_shared(self, mpn: int) -> int | None:
        """Turn the private page ``mpn`` into a shared, read-only one."""
        machine = self.machine
        vm = self.vms.get(machine.owner.get(mpn))
        if vm is None or machine.state.get(mpn) != MAPPED or mpn in self.pinned:
            return None
        ppn = vm.pmap.ppn_of.get(mpn)
        if ppn is None:
            return None
        vm.hooks.unmap_page(ppn, mpn)            # remapped read-only on the next touch
        vm.pmap.unbind(ppn)
        machine.set_state(mpn, SHARED_PAGE, owner=SHARED_OWNER)
        vm.pmap.bind_shared(ppn, mpn)
        self.sharers[mpn] = {(vm.name, ppn)}
        self.shared_ever += 1
        return mpn
