"""The host: one machine memory shared by every VM, and what the VMM does
when it runs short (Waldspurger, "Memory Resource Management in VMware ESX
Server", OSDI 2002).

* **Allocation with reclaim.**  A hidden fault (or EPT violation) on a page
  with no machine page asks the host for one.  When fewer than ``reserve``
  pages are free, the host reclaims first.  A CLOCK hand sweeps machine
  pages and looks at the accessed bits the hardware set in the sptes/nptes
  that map each one: set, it clears them (and drops the TLB entries, so a
  later use sets them again) and moves on; clear, the page is the victim.
  Every shadow or nested entry mapping the victim is dropped (reverse map),
  its contents go to the swap disk, and the machine page is freed.  A page
  that is all zeros is not written: it simply becomes unbacked again.
* **The swap disk** is a simpy resource with a latency and a bandwidth: the
  faulting vCPU waits for its I/O while the other vCPUs run.  The next
  touch of a swapped page reads it back.
* **Content-based sharing.**  A periodic scan hashes guest pages (zero pages
  found with numpy, the others hashed) and maps identical ones to one
  read-only machine page; a write to it exits and gets a private copy (a
  copy-on-write break).  Zero pages are the common case.
* Ballooning is not modelled: it needs a cooperating driver in the guest.

The VMM pins the pages a fault handler is about to map, so neither reclaim
nor sharing takes them in the middle of a fault.  The VMM's own tables
(shadow and nested) come from the reserve and are never reclaimed.
"""

from __future__ import annotations

import numpy as np
import simpy

from ..hw.memory import PAGE_SIZE
from .pmap import SHARED_OWNER, VMM_OWNER, MachineMemory, OutOfMachineMemory, PMap


class SwapDisk:
    """A simulated disk for swapped pages: one request at a time."""

    STATS = {"writes": "pages written (swap-outs)", "reads": "pages read (swap-ins)",
             "busy_cycles": "cycles the disk spent transferring",
             "sync_reads": "pages the VMM read back at once (guest table walks, loading)"}

    def __init__(self, env, latency: int, bandwidth: int):
        self.env = env
        self.resource = simpy.Resource(env, capacity=1)
        self.cost = latency + PAGE_SIZE // max(bandwidth, 1)
        self.store: dict[tuple, bytes] = {}
        self.writes = self.reads = self.sync_reads = 0
        self.busy_cycles = 0

    def _transfer(self):
        with self.resource.request() as req:
            yield req
            yield self.env.timeout(self.cost)
        self.busy_cycles += self.cost

    def write(self, key: tuple, data: bytes):
        """Write a page (a generator: the caller waits for the disk)."""
        self.store[key] = data           # the bytes are safe as of now
        self.writes += 1
        yield from self._transfer()

    def read(self, key: tuple):
        """Read a page back (a generator returning its bytes)."""
        data = self.store.pop(key)
        self.reads += 1
        yield from self._transfer()
        return data

    def take_now(self, key: tuple) -> bytes:
        self.sync_reads += 1
        return self.store.pop(key)

    def peek(self, key: tuple) -> bytes:
        return self.store[key]

    def stats(self) -> dict:
        return {"writes": self.writes, "reads": self.reads, "sync_reads": self.sync_reads,
                "busy_cycles": self.busy_cycles, "cycles_per_page": self.cost,
                "pages_on_disk": len(self.store)}


class Host:
    """Machine memory, swap disk and sharing for every VM on the machine."""

    STATS = {
        "reclaimed": "guest pages taken back (to the swap disk, or dropped if zero)",
        "swap_outs": "pages written to the swap disk",
        "swap_ins": "pages read back on a fault",
        "zero_dropped": "reclaimed pages that were all zeros (no I/O)",
        "clock_scanned": "machine pages the clock hand looked at",
        "shared_pages": "machine pages currently shared",
        "sharing_saved": "machine pages saved by sharing right now",
        "zero_shared": "guest pages mapped to a shared zero page",
        "cow_breaks": "writes to a shared page that got a private copy",
        "scans": "sharing scans",
    }

    def __init__(self, env, machine_bytes: int, *, reserve: int = 16,
                 swap_latency: int = 20_000, swap_bandwidth: int = 4,
                 share_interval: int = 0, hash_cost: int = 40):
        self.env = env
        self.machine = MachineMemory(machine_bytes)
        self.machine.on_free = self._freed
        self.reserve = reserve
        self.disk = SwapDisk(env, swap_latency, swap_bandwidth)
        self.share_interval = share_interval
        self.hash_cost = hash_cost
        self.vms: dict = {}                      # name -> System
        self.pinned: set[int] = set()
        self.hand = 1
        self.sharers: dict[int, set[tuple[str, int]]] = {}   # shared mpn -> (vm, ppn)
        self.by_content: dict[bytes, int] = {}              # digest -> shared mpn
        self.reclaimed = self.swap_outs = self.swap_ins = self.zero_dropped = 0
        self.clock_scanned = self.zero_shared = self.cow_breaks = self.scans = 0
        self.shared_ever = 0

    # --- VMs --------------------------------------------------------------------
    def attach(self, system) -> None:
        self.vms[system.pmap.name] = system
        system.pmap.host = self

    def start(self) -> None:
        if self.share_interval:
            self.env.process(self._sharing())

    def _freed(self, mpn: int, owner: str) -> None:
        if owner == VMM_OWNER:
            return
        for vm in self.vms.values():
            if owner in (vm.pmap.name, SHARED_OWNER):
                vm.mmu.forget_pn(mpn)

    # --- allocation ---------------------------------------------------------------
    def obtain(self, vm, ppn: int, write: bool):
        """The machine page for ``vm``'s ``ppn``, for a fault about to map it
        (a generator: it may wait for the swap disk).  Returns (mpn, how):
        how is resident, allocated, swapped-in or cow-broken."""
        pmap = vm.pmap
        pmap.check(ppn)
        if ppn in pmap.shared:
            if write:
                yield from self._make_room(vm)
                mpn, how = self.unshare_now(pmap, ppn), "cow-broken"
            else:
                mpn, how = pmap.mpn_of[ppn], "resident"
        elif ppn in pmap.mpn_of:
            mpn, how = pmap.mpn_of[ppn], "resident"
        else:
            yield from self._make_room(vm)
            if ppn in pmap.mpn_of:          # the disk wait let somebody else back it
                mpn, how = pmap.mpn_of[ppn], "resident"
            elif ppn in pmap.swapped:
                key = pmap.swapped.pop(ppn)
                mpn = self.machine.alloc(pmap.name)
                pmap.bind(ppn, mpn)
                self.pinned.add(mpn)
                data = yield from self.disk.read(key)
                self.machine.mem.page(mpn)[:] = data
                self.swap_ins += 1
                how = "swapped-in"
                if vm.bus.active:
                    vm.bus.emit("swap_in", ppn=ppn, mpn=mpn, waited=self.disk.cost)
            else:
                mpn = self.machine.alloc(pmap.name)
                pmap.bind(ppn, mpn)
                pmap.allocated += 1
                how = "allocated"
        self.pinned.add(mpn)
        return mpn, how

    def unpin(self) -> None:
        self.pinned.clear()

    def _make_room(self, vm):
        while self.machine.free_pages() <= self.reserve:
            victim = self._pick()
            if victim is None:
                return                     # nothing reclaimable: alloc may fail
            yield from self._evict(*victim)

    def _pick(self):
        """The CLOCK hand: the first machine page whose mappings were not
        accessed since it last passed (clearing the accessed bits it sees)."""
        machine = self.machine
        n = machine.npages
        for _ in range(2 * n):
            mpn = self.hand
            self.hand = self.hand + 1 if self.hand + 1 < n else 1
            self.clock_scanned += 1
            owner = machine.owner.get(mpn)
            vm = self.vms.get(owner)
            if vm is None or mpn in self.pinned or vm.finished:
                continue
            ppn = vm.pmap.ppn_of[mpn]
            if not vm.vmm.evictable(ppn, mpn):
                continue
            if vm.vmm.referenced(ppn, mpn):
                continue
            return vm, ppn, mpn
        return None

    def _evict(self, vm, ppn: int, mpn: int):
        vm.vmm.unmap_page(ppn, mpn)
        page = self.machine.mem.page(mpn)
        zero = not np.frombuffer(page, dtype=np.uint64).any()
        data = bytes(page)
        vm.pmap.unbind(ppn)
        self.machine.free(mpn)
        self.reclaimed += 1
        if vm.bus.active:
            vm.bus.emit("reclaim", va=None, ppn=ppn, mpn=mpn, zero=zero)
        if zero:
            self.zero_dropped += 1         # unbacked again: the next touch is zero-filled
            return
        key = (vm.pmap.name, ppn)
        vm.pmap.swapped[ppn] = key
        self.swap_outs += 1
        yield from self.disk.write(key, data)

    # --- synchronous paths (the VMM reading guest tables, loading images) ------------
    def swap_in_now(self, pmap: PMap, ppn: int) -> int:
        key = pmap.swapped.pop(ppn)
        mpn = self.machine.alloc(pmap.name)
        pmap.bind(ppn, mpn)
        self.machine.mem.page(mpn)[:] = self.disk.take_now(key)
        self.swap_ins += 1
        return mpn

    def unshare_now(self, pmap: PMap, ppn: int) -> int:
        """Give ``ppn`` a private copy of its shared page (a COW break)."""
        shared = pmap.mpn_of[ppn]
        vm = self.vms[pmap.name]
        vm.vmm.unmap_page(ppn, shared)
        pmap.unbind(ppn)
        mpn = self.machine.alloc(pmap.name)
        self.machine.mem.page(mpn)[:] = self.machine.mem.page(shared)
        pmap.bind(ppn, mpn)
        self.cow_breaks += 1
        if vm.bus.active:
            vm.bus.emit("cow_break", ppn=ppn, shared=shared, mpn=mpn)
        refs = self.sharers[shared]
        refs.discard((pmap.name, ppn))
        if not refs:
            self._drop_shared(shared)
        return mpn

    def _drop_shared(self, mpn: int) -> None:
        del self.sharers[mpn]
        for digest, m in list(self.by_content.items()):
            if m == mpn:
                del self.by_content[digest]
        self.machine.free(mpn)

    # --- content-based sharing ------------------------------------------------------
    def _sharing(self):
        while any(not vm.finished for vm in self.vms.values()):
            yield self.env.timeout(self.share_interval)
            hashed = self.scan()
            if hashed:
                yield self.env.timeout(hashed * self.hash_cost)

    def scan(self) -> int:
        """Share every guest page whose contents equal another's; returns
        the pages hashed."""
        self.scans += 1
        mem = self.machine.mem
        hashed = 0
        for name, vm in sorted(self.vms.items()):
            if vm.finished:
                continue
            pmap = vm.pmap
            for mpn, ppn in sorted(pmap.ppn_of.items()):
                if pmap.ppn_of.get(mpn) != ppn:
                    continue               # made shared earlier in this scan
                if mpn in self.pinned or not vm.vmm.evictable(ppn, mpn):
                    continue
                page = mem.page(mpn)
                hashed += 1
                zero = not np.frombuffer(page, dtype=np.uint64).any()
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
                vm.vmm.unmap_page(ppn, mpn)
                pmap.unbind(ppn)
                self.machine.free(mpn)
                pmap.bind_shared(ppn, shared)
                self.sharers[shared].add((name, ppn))
                if zero:
                    self.zero_shared += 1
                if vm.bus.active:
                    vm.bus.emit("page_shared", ppn=ppn, mpn=shared, freed=mpn, zero=zero)
        self.by_content = {d: m for d, m in self.by_content.items() if m >= 0}
        return hashed

    def _make_shared(self, mpn: int) -> int | None:
        """Turn the private page ``mpn`` into a shared, read-only one."""
        owner = self.machine.owner.get(mpn)
        vm = self.vms.get(owner)
        if vm is None or mpn not in vm.pmap.ppn_of or mpn in self.pinned:
            return None
        ppn = vm.pmap.ppn_of[mpn]
        vm.vmm.unmap_page(ppn, mpn)            # remapped read-only on the next touch
        vm.pmap.unbind(ppn)
        vm.pmap.bind_shared(ppn, mpn)
        self.machine.owner[mpn] = SHARED_OWNER
        self.sharers[mpn] = {(owner, ppn)}
        self.shared_ever += 1
        return mpn

    def stats(self) -> dict:
        saved = sum(len(r) - 1 for r in self.sharers.values())
        return {"reclaimed": self.reclaimed, "swap_outs": self.swap_outs,
                "swap_ins": self.swap_ins, "zero_dropped": self.zero_dropped,
                "clock_scanned": self.clock_scanned, "shared_pages": len(self.sharers),
                "sharing_saved": saved, "zero_shared": self.zero_shared,
                "cow_breaks": self.cow_breaks, "scans": self.scans,
                "disk": self.disk.stats(), "machine": self.machine.stats()}


__all__ = ["Host", "OutOfMachineMemory", "SwapDisk"]
