"""The host: one machine memory shared by every VM, and what the VMM does
when it runs short (Waldspurger, "Memory Resource Management in VMware ESX
Server", OSDI 2002).

Every machine page and guest page is in one state (``pmap.py`` draws the
machine); the host makes the transitions, in this order:

* **Allocation with reclaim.**  A hidden fault (or EPT violation) on a page
  with no machine page asks the host for one (``obtain``).  While more than
  ``reserve`` pages are free it gets one at once.  Otherwise a CLOCK hand
  sweeps machine pages and reads the accessed bits the hardware set in the
  sptes/nptes that map each one: set, it clears them (and drops the TLB
  entries, so a later use sets them again) and moves on; clear, the page is
  the victim.  Every shadow, nested and TLB mapping of the victim is zapped
  first (``unmap_page``), then its contents go to the swap disk
  (mapped -> writing-out -> free) and the freed page goes straight to the
  VM that asked: nobody can take it in between, so each allocation makes
  progress.  A page that is all zeros is not written: its guest page is
  simply unbacked again.
* **The swap disk** is a simpy resource with a latency and a bandwidth: the
  faulting vCPU waits for its I/O while the other vCPUs run.  A touch of a
  guest page on the disk reads it back (free -> reading-in -> mapped).  A
  page with I/O in flight is pinned by its state: reclaim and sharing pass
  it by, and a fault on a guest page whose write-out is in flight waits for
  the write and takes the page back (it still holds the contents).
* **Content-based sharing.**  A periodic scan hashes guest pages (zero pages
  found by comparison with a page of zeros, the others by content) and maps identical ones to one
  read-only machine page (mapped -> shared); a write to it exits and gets a
  private copy (a copy-on-write break).  Zero pages are the common case.
* **Pins.**  The pages an exit hands to a VM stay pinned -- out of reclaim
  and sharing -- until that VM's vCPU retires an instruction, so an
  instruction that needs several pages gets them all: under any pressure
  every VM makes progress (docs/design.md says what is guaranteed).
* Ballooning is not modelled: it needs a cooperating driver in the guest.

A VM is attached with its PMap and its VMM's hooks -- three for reclaim
(``evictable``, ``referenced``, ``unmap_page``), ``shrink_tables`` when no
guest page can go, and ``power_off`` when it ends (``detach``: everything
it held comes back) -- the host reaches nothing else of it.  The VMM's own
tables (shadow and nested) come from the reserve; when nothing else is
left, the VMMs free those their hardware is not walking
(``_shrink_tables``).  ``check`` (``--check-invariants``) runs
after every host event: each reclaim, I/O completion and sharing scan.
"""

from __future__ import annotations

from ..hw.memory import ZERO_PAGE
from .host_sharing import SharingMixin
from .host_vms import Guest, VmsMixin
from .pmap import (
    FREE,
    MAPPED,
    READING_IN,
    SHARED_PAGE,
    WRITING_OUT,
    MachineMemory,
    OutOfMachineMemory,
    PMap,
)
from .swap import SwapDisk, SwapIo


class Host(SharingMixin, VmsMixin):
    """Machine memory, swap disk and sharing for every VM on the machine
    (sharing and COW breaks: ``SharingMixin``, in ``host_sharing.py``; VMs
    coming, leaving and giving tables back: ``VmsMixin``, in ``host_vms.py``)."""

    STATS = {
        "reclaimed": "guest pages taken back (to the swap disk, or dropped if zero)",
        "swap_outs": "pages written to the swap disk",
        "swap_ins": "pages read back on a fault",
        "rescued": "pages a fault took back while their write-out was in flight",
        "zero_dropped": "reclaimed pages that were all zeros (no I/O)",
        "clock_scanned": "machine pages the clock hand looked at",
        "shared_pages": "machine pages currently shared",
        "sharing_saved": "machine pages saved by sharing right now",
        "sharing_saved_peak": "most machine pages saved by sharing at once (after a scan)",
        "zero_shared": "guest pages mapped to a shared zero page",
        "cow_breaks": "writes to a shared page that got a private copy",
        "scans": "sharing scans",
        "released": "machine pages given back by VMs that ended (their memory, "
                    "their VMM's tables)",
        "tables_shrunk": "VMM table pages freed when no guest page could go",
    }

    def __init__(self, env, machine_bytes: int, *, reserve: int = 16,
                 swap_latency: int = 20_000, swap_bandwidth: int = 4,
                 share_interval: int = 0, hash_cost: int = 40):
        self.env = env
        self.machine = MachineMemory(machine_bytes)
        self.machine.on_empty = self._evict_now
        self.machine.on_free = self._unpin_freed
        self.reserve = reserve
        self.disk = SwapDisk(env, swap_latency, swap_bandwidth)
        self.share_interval = share_interval
        self.hash_cost = hash_cost
        self.vms: dict[str, Guest] = {}
        self.pinned: dict[int, set[str]] = {}    # mpn -> the VMs whose exits pinned it
        self._pins: dict[str, list[int]] = {}    # VM -> the pages it pinned
        self.hand = 1
        self.sharers: dict[int, set[tuple[str, int]]] = {}   # shared mpn -> (vm, ppn)
        self.by_content: dict[bytes, int] = {}              # digest -> shared mpn
        self.next_scan: int | None = None        # when the sharing scan runs next
        self.check = None                        # callable(host) after every host event
        self.reclaimed = self.swap_outs = self.swap_ins = self.zero_dropped = 0
        self.clock_scanned = self.zero_shared = self.cow_breaks = self.scans = 0
        self.rescued = 0
        self.released = 0
        self.tables_shrunk = 0
        self.shrink_next = 0
        self.saved_peak = 0
        self.shared_ever = 0

    def start(self) -> None:
        if self.share_interval:
            self.env.process(self._sharing())

    def _checked(self) -> None:
        if self.check is not None:
            self.check(self)

    # --- pins -----------------------------------------------------------------------
    # A page stays pinned while any VM whose exit pinned it has not made
    # progress since (a shared page may be pinned by several); a pin ends
    # with the page too: a freed page handed to another VM is not pinned for
    # it by the old holder's pin (which its release would end under it).
    def _pin(self, name: str, mpn: int) -> None:
        holders = self.pinned.setdefault(mpn, set())
        if name not in holders:
            holders.add(name)
            self._pins.setdefault(name, []).append(mpn)

    def release(self, name: str) -> None:
        """VM ``name`` retired an instruction: the pages its exits pinned may
        go again."""
        for mpn in self._pins.pop(name, ()):
            holders = self.pinned.get(mpn)
            if holders is not None:
                holders.discard(name)
                if not holders:
                    del self.pinned[mpn]

    def _unpin_freed(self, mpn: int, owner) -> None:
        self.pinned.pop(mpn, None)

    # --- the fault path -----------------------------------------------------------
    def obtain(self, name: str, ppn: int, write: bool):
        """The machine page for VM ``name``'s ``ppn``, for a fault about to
        map it (a generator: it may wait for the swap disk).  Returns (mpn,
        how): how is resident, allocated, swapped-in, rescued or
        cow-broken.  The page stays pinned until the VM makes progress."""
        vm = self.vms[name]
        pmap = vm.pmap
        pmap.check(ppn)
        how = "resident"
        while True:
            mpn = pmap.mpn_of.get(ppn)
            if mpn is not None and (not write or ppn not in pmap.shared):
                break
            if mpn is not None:                       # a write to a shared page
                new = yield from self._allocate(vm, MAPPED)
                if pmap.mpn_of.get(ppn) == mpn and ppn in pmap.shared:
                    mpn, how = self._cow(vm, ppn, new), "cow-broken"
                    break
                self._release_page(new)               # the sharing changed meanwhile
                continue
            io = pmap.in_flight.get(ppn)
            if io is not None:
                # Its I/O is in flight: wait for it, never race it.  A write-out
                # gives the page back when it ends (it still holds the bytes).
                if io.kind == WRITING_OUT:
                    io.rescue = True
                    how = "rescued"
                yield io.done
                continue
            if ppn in pmap.swapped:
                mpn = yield from self._swap_in(vm, ppn)
                if mpn is None:
                    continue
                how = "swapped-in"
                break
            new = yield from self._allocate(vm, MAPPED)
            if pmap.state(ppn) != "unbacked":
                self._release_page(new)
                continue
            pmap.bind(ppn, new)
            pmap.allocated += 1
            mpn, how = new, "allocated"
            break
        self._pin(name, mpn)
        return mpn, how

    def obtain_now(self, name: str, ppn: int, write: bool):
        """``obtain`` as a plain call, when it can end without waiting or
        reclaiming (a resident page; an unbacked one while free pages are
        above the reserve): (mpn, how), the same as ``obtain`` would give.
        None when it cannot: nothing was done, ``obtain`` does it all."""
        pmap = self.vms[name].pmap
        if not 0 <= ppn < pmap.npages:
            return None
        mpn = pmap.mpn_of.get(ppn)
        if mpn is not None:
            if write and ppn in pmap.shared:
                return None
            how = "resident"
        else:
            machine = self.machine
            if (ppn in pmap.in_flight or ppn in pmap.swapped
                    or machine.free_pages() <= self.reserve):
                return None
            mpn = machine.alloc(name, MAPPED)
            pmap.bind(ppn, mpn)
            pmap.allocated += 1
            how = "allocated"
        self._pin(name, mpn)
        return mpn, how

    def _allocate(self, vm: Guest, state: str):
        """A zeroed machine page for ``vm`` in ``state`` (a generator).  With
        the reserve reached it reclaims a victim and takes the victim's page
        itself, so no other VM can take it first.  Returns the mpn (not yet
        bound: the caller binds it before it yields again)."""
        machine = self.machine
        while machine.free_pages() <= self.reserve:
            victim = self._pick()
            if victim is None:
                if self._shrink_tables():
                    continue               # the VMMs gave tables back
                break                      # nothing reclaimable: the reserve pays
            mpn = yield from self._evict(*victim)
            if mpn is not None:
                return self._take(mpn, vm.name, state)
        return machine.alloc(vm.name, state)

    def _take(self, freed: int, name: str, state: str) -> int:
        """The page just freed, for ``name`` (last freed, first handed out)."""
        mpn = self.machine.alloc(name, state)
        assert mpn == freed, (mpn, freed)
        return mpn

    def _release_page(self, mpn: int) -> None:
        """A page allocated and then not needed (never bound, never mapped)."""
        self.machine.free(mpn)

    def _pick(self):
        """The CLOCK hand: the first guest page, not pinned, whose mappings
        were not accessed since it last passed (clearing the accessed bits
        it sees); (guest, ppn, mpn), (None, None, mpn) for a shared page
        (every sharer's: ``_shared_victim``), or None."""
        machine = self.machine
        n = machine.npages
        for _ in range(2 * n):
            mpn = self.hand
            self.hand = self.hand + 1 if self.hand + 1 < n else 1
            self.clock_scanned += 1
            state = machine.state.get(mpn)
            if state == SHARED_PAGE and self._shared_victim(mpn):
                return None, None, mpn         # every sharer's page goes (host_sharing)
            if state != MAPPED or mpn in self.pinned:
                continue
            vm = self.vms.get(machine.owner[mpn])
            if vm is None or vm.finished():
                continue
            ppn = vm.pmap.ppn_of.get(mpn)
            if ppn is None or not vm.hooks.evictable(ppn, mpn):
                continue
            if vm.hooks.referenced(ppn, mpn):
                continue
            return vm, ppn, mpn
        return None

    def _evict(self, vm: Guest, ppn: int, mpn: int):
        """Take ``vm``'s page back: zap its mappings, then drop it (all zeros)
        or write it out.  Returns the freed mpn, or None when a fault took
        the page back during its write (a generator).  ``vm`` None: the
        shared page ``mpn``, taken from every sharer."""
        if vm is None:
            return (yield from self._evict_shared(mpn))
        vm.hooks.unmap_page(ppn, mpn)           # every mapping goes first
        page = self.machine.mem.page(mpn)
        zero = page == ZERO_PAGE
        pmap = vm.pmap
        pmap.unbind(ppn)
        self.reclaimed += 1
        if vm.bus.active:
            vm.bus.emit("reclaim", va=None, ppn=ppn, mpn=mpn, zero=zero)
        if zero:
            self.zero_dropped += 1          # unbacked again: the next touch is zero-filled
            self.machine.free(mpn)
            self._checked()
            return mpn
        key = (vm.name, ppn)
        io = SwapIo(WRITING_OUT, ppn, mpn, key, self.env.event(), data=bytes(page))
        pmap.in_flight[ppn] = io
        self.machine.set_state(mpn, WRITING_OUT)
        self.swap_outs += 1
        self.disk.writes += 1
        yield from self.disk.transfer()
        freed = None
        # Settled: the VMM took the page back already (``back_now``, which
        # dropped this transfer from ``in_flight``); the page may even be on
        # its way out again, a transfer of its own there now.
        if not io.settled:
            del pmap.in_flight[ppn]
            if io.rescue:
                self.machine.set_state(mpn, MAPPED)
                pmap.bind(ppn, mpn)
                self.rescued += 1
            else:
                self.disk.store[key] = io.data
                pmap.swapped[ppn] = key
                self.machine.free(mpn)
                freed = mpn
        io.done.succeed()
        self._checked()
        return freed

    def _swap_in(self, vm: Guest, ppn: int):
        """Read ``vm``'s ``ppn`` back from the disk (a generator); returns
        its mpn, or None if its state changed while a page was found."""
        pmap = vm.pmap
        mpn = yield from self._allocate(vm, READING_IN)
        if ppn not in pmap.swapped:
            self.machine.set_state(mpn, MAPPED)
            self._release_page(mpn)
            return None
        key = pmap.swapped.pop(ppn)
        io = SwapIo(READING_IN, ppn, mpn, key, self.env.event())
        pmap.in_flight[ppn] = io
        self.disk.reads += 1
        yield from self.disk.transfer()
        if not io.settled:                  # (settled: ``back_now`` finished it)
            del pmap.in_flight[ppn]
            self.machine.mem.page(mpn)[:] = self.disk.store.pop(key)
            self.machine.set_state(mpn, MAPPED)
            pmap.bind(ppn, mpn)
        self.swap_ins += 1
        if vm.bus.active:
            vm.bus.emit("swap_in", ppn=ppn, mpn=mpn, waited=self.disk.cost)
        io.done.succeed()
        self._checked()
        # None: settled, and taken again since (the caller looks once more)
        return pmap.mpn_of.get(ppn)

    # --- synchronous paths (the VMM reading guest tables, loading images) ------------
    def peek(self, pmap: PMap, ppn: int) -> bytes:
        """The contents of a guest page on the disk or with I/O in flight."""
        io = pmap.in_flight.get(ppn)
        if io is None:
            return self.disk.store[pmap.swapped[ppn]]
        if io.kind == WRITING_OUT:
            return io.data
        return self.disk.store[io.key]

    def back_now(self, pmap: PMap, ppn: int) -> int:
        """Bring ``ppn`` back at once for the VMM to write (no disk time):
        from the disk, or from its I/O in flight, which then settles."""
        io = pmap.in_flight.get(ppn)
        machine = self.machine
        if io is not None and io.kind == WRITING_OUT:
            del pmap.in_flight[ppn]
            io.settled = True
            machine.set_state(io.mpn, MAPPED)
            pmap.bind(ppn, io.mpn)
            self.rescued += 1
            return io.mpn
        if io is not None:                          # reading-in: finish it now
            del pmap.in_flight[ppn]
            io.settled = True
            machine.mem.page(io.mpn)[:] = self.disk.store.pop(io.key)
            machine.set_state(io.mpn, MAPPED)
            pmap.bind(ppn, io.mpn)
            self.disk.sync_reads += 1
            return io.mpn
        mpn = self.machine.alloc(pmap.name)
        key = pmap.swapped.pop(ppn)
        pmap.bind(ppn, mpn)
        machine.mem.page(mpn)[:] = self.disk.store.pop(key)
        self.disk.sync_reads += 1
        self.swap_ins += 1
        return mpn

    def _evict_now(self) -> bool:
        """No machine page is free and the VMM needs one at once (its own
        tables, a synchronous access): take a victim back now, its write to
        the disk costing no time, like the VMM's synchronous reads.
        Returns False when nothing is reclaimable."""
        victim = self._pick()
        if victim is None:
            return self._shrink_tables() > 0
        vm, ppn, mpn = victim
        machine = self.machine
        if vm is None:
            self._let_shared_go(mpn, bytes(machine.mem.page(mpn)))
            return True
        vm.hooks.unmap_page(ppn, mpn)
        data = bytes(machine.mem.page(mpn))
        vm.pmap.unbind(ppn)
        self.reclaimed += 1
        if any(data):
            key = (vm.name, ppn)
            self.disk.store[key] = data
            vm.pmap.swapped[ppn] = key
            self.swap_outs += 1
        else:
            self.zero_dropped += 1
        machine.free(mpn)
        return True

    def stats(self) -> dict:
        saved = self.sharing_saved()
        return {"reclaimed": self.reclaimed, "swap_outs": self.swap_outs,
                "swap_ins": self.swap_ins, "rescued": self.rescued,
                "zero_dropped": self.zero_dropped,
                "clock_scanned": self.clock_scanned, "shared_pages": len(self.sharers),
                "sharing_saved": saved, "sharing_saved_peak": max(self.saved_peak, saved),
                "zero_shared": self.zero_shared,
                "cow_breaks": self.cow_breaks, "scans": self.scans,
                "released": self.released, "tables_shrunk": self.tables_shrunk,
                "disk": self.disk.stats(), "machine": self.machine.stats()}


__all__ = ["FREE", "Guest", "Host", "OutOfMachineMemory", "SwapDisk", "SwapIo"]
