"""The host's page-state machine against a plain dictionary model.

A hypothesis ``RuleBasedStateMachine`` drives the real ``Host`` (machine
memory, PMaps, swap disk, sharing) with two or three small VMs whose VMM is
a stand-in that keeps the "hardware" mappings a real one would (a va's
spte and TLB entry, here one mapping per guest page, holding the page's
bytes as a TLB entry does).  Random interleavings of guest accesses (a
fault through ``obtain``, or a hit through a mapping already held),
writes and reads by the VMM itself (``GuestPhys``), sharing scans, swap
I/O with random latencies completing in any order, and VMs making
progress.  After every step:

* ``check_host``: every page in one state, reference counts exact, no VM
  reaching a page it may not, no mapping holding a freed page's bytes;
* every VM's memory equals the model's: nothing lost, nothing crossed.

A VM may also end (``Host.detach``): every page it held comes back, even
one with its write to the disk in flight for another VM's fault.

A guest write through a stale mapping (a page reclaimed or shared without
its mappings zapped first) would land in bytes nobody reads again: the
model catches the loss even where the invariant would not.
"""

from __future__ import annotations

import os

import simpy
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from emu.vmm.host import Host
from emu.vmm.host_invariants import check_host
from emu.vmm.pmap import SHARED, GuestPhys, PMap

PAGE = 4096
GUEST_PAGES = 24
NAMES = ("a", "b", "c")
VALUES = st.sampled_from([0, 0, 1, 7, 0xDEADBEEF])   # zeros: dropped and shared pages


class StandInVmm:
    """The VMM's reclaim hooks, and the mappings its hardware holds."""

    def __init__(self, name: str, machine):
        self.name = name
        self.machine = machine
        self.maps: dict[int, tuple[int, bytearray, bool]] = {}   # ppn -> (mpn, page, writable)
        self.accessed: set[int] = set()
        self.tables = {3}            # a guest page table: never evictable

    def evictable(self, ppn: int, mpn: int) -> bool:
        return ppn not in self.tables

    def referenced(self, ppn: int, mpn: int) -> bool:
        used = ppn in self.accessed
        self.accessed.discard(ppn)
        return used

    def unmap_page(self, ppn: int, mpn: int) -> None:
        for p in [p for p, m in self.maps.items() if m[0] == mpn]:
            del self.maps[p]

    def power_off(self) -> None:
        self.maps.clear()            # the VM has ended: its hardware holds nothing

    def translations(self):
        for ppn, (mpn, page, writable) in sorted(self.maps.items()):
            yield (f"mapping of ppn {ppn:#x}", mpn, page, writable)


class HostMachine(RuleBasedStateMachine):
    """Two or three VMs on one small machine (see the module doc)."""

    @initialize(vms=st.integers(2, 3), pages=st.integers(12, 40),
                latency=st.sampled_from([0, 1, 100, 20_000]), reserve=st.integers(1, 4))
    def build(self, vms, pages, latency, reserve):
        self.env = simpy.Environment()
        self.host = Host(self.env, pages * PAGE, reserve=reserve, swap_latency=latency)
        self.host.check = check_host
        self.vmms, self.guests, self.model, self.busy = {}, {}, {}, set()
        for name in NAMES[:vms]:
            pmap = PMap(name, GUEST_PAGES * PAGE, self.host.machine)
            vmm = StandInVmm(name, self.host.machine)
            self.host.attach(name, pmap, vmm, _Quiet(), lambda: False)
            self.vmms[name], self.guests[name] = vmm, GuestPhys(pmap)
            self.model[name] = {}

    # --- the rules ------------------------------------------------------------------
    def _fault(self, name: str, ppn: int, write: bool, value: int):
        """A guest access that exits: the host finds the page, the VMM maps
        it, the instruction completes (progress)."""
        host, vmm = self.host, self.vmms[name]
        pmap = self.guests[name].pmap
        try:
            mpn, _ = yield from host.obtain(name, ppn, write)
            page = host.machine.mem.page(mpn)
            vmm.maps[ppn] = (mpn, page, pmap.state(ppn) != SHARED)
            vmm.accessed.add(ppn)
            self._use(name, ppn, page, write, value)
            host.release(name)
        finally:
            self.busy.discard(name)

    def _use(self, name, ppn, page, write, value) -> None:
        if write:
            page[:4] = value.to_bytes(4, "little")
            self.model[name][ppn] = value
        else:
            got = int.from_bytes(page[:4], "little")
            assert got == self.model[name].get(ppn, 0), (name, ppn, got)

    @rule(data=st.data(), ppn=st.integers(0, GUEST_PAGES - 1), write=st.booleans(),
          value=VALUES)
    def access(self, data, ppn, write, value):
        """A guest access: a hit through a mapping it holds (that allows
        it), or a fault (when its vCPU is not already in one)."""
        name = data.draw(st.sampled_from(sorted(self.vmms)))
        vmm = self.vmms[name]
        held = vmm.maps.get(ppn)
        if held is not None and (held[2] or not write):
            vmm.accessed.add(ppn)
            self._use(name, ppn, held[1], write, value)
        elif name not in self.busy:
            self.busy.add(name)
            self.env.process(self._fault(name, ppn, write, value))

    @rule(data=st.data(), ppn=st.integers(0, GUEST_PAGES - 1), value=VALUES)
    def vmm_writes(self, data, ppn, value):
        """The VMM writes guest memory itself (emulation, loading)."""
        idle = sorted(set(self.vmms) - self.busy)
        if idle:
            name = data.draw(st.sampled_from(idle))
            self.guests[name].write32(ppn * PAGE, value)
            self.model[name][ppn] = value

    @rule(data=st.data(), ppn=st.integers(0, GUEST_PAGES - 1))
    def vmm_reads(self, data, ppn):
        name = data.draw(st.sampled_from(sorted(self.vmms)))
        assert self.guests[name].read32(ppn * PAGE) == self.model[name].get(ppn, 0)

    @rule()
    def sharing_scan(self):
        self.host.scan()

    @rule(cycles=st.sampled_from([1, 50, 1_000, 30_000]))
    def time_passes(self, cycles):
        self.env.run(until=self.env.now + cycles)

    @precondition(lambda self: hasattr(self, "host") and len(self.vmms) > 1)
    @rule(data=st.data())
    def vm_ends(self, data):
        """An idle VM ends (never one in a fault: its vCPU is in the exit):
        every machine page it held and every swap slot of its pages come
        back, the other VMs' memory untouched (``consistent``)."""
        idle = sorted(set(self.vmms) - self.busy)
        if not idle:
            return
        name = data.draw(st.sampled_from(idle))
        machine = self.host.machine
        held = sum(1 for who in machine.owner.values() if who == name)
        free = machine.free_pages()
        freed = self.host.detach(name)
        assert name not in machine.owner.values()
        assert not [key for key in self.host.disk.store if key[0] == name]
        assert not [ref for refs in self.host.sharers.values() for ref in refs
                    if ref[0] == name]
        assert freed == machine.free_pages() - free >= held
        for table in (self.vmms, self.guests, self.model):
            del table[name]

    @precondition(lambda self: hasattr(self, "host"))
    @rule(data=st.data())
    def progress(self, data):
        """A VM retires an instruction without a fault: its pins go."""
        name = data.draw(st.sampled_from(sorted(self.vmms)))
        if name not in self.busy:
            self.host.release(name)

    # --- after every step -------------------------------------------------------------
    @invariant()
    def consistent(self):
        if not hasattr(self, "host"):
            return
        check_host(self.host)
        for name, guest in self.guests.items():
            for ppn in range(GUEST_PAGES):
                assert guest.read32(ppn * PAGE) == self.model[name].get(ppn, 0), (name, ppn)

    def teardown(self):
        if hasattr(self, "host"):
            self.env.run()             # every I/O completes
            self.consistent()
            assert not self.busy


class _Quiet:
    active = False


# EMU_HOST_EXAMPLES=N for a long run (python -m pytest tests/test_host_model.py).
HostMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("EMU_HOST_EXAMPLES", "40")), stateful_step_count=60,
    deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestHostStateMachine = HostMachine.TestCase


# --- a machine full of shared pages ------------------------------------------------------
def _full_of_shared_pages(latency: int):
    """Two VMs whose 12 guest pages each hold the same bytes pairwise, all
    shared, on a machine with room for little else."""
    env = simpy.Environment()
    host = Host(env, 16 * PAGE, reserve=1, swap_latency=latency)
    host.check = check_host
    vmms, guests = {}, {}
    for name in ("a", "b"):
        pmap = PMap(name, GUEST_PAGES * PAGE, host.machine)
        vmms[name] = StandInVmm(name, host.machine)
        vmms[name].tables = set()
        host.attach(name, pmap, vmms[name], _Quiet(), lambda: False)
        guests[name] = GuestPhys(pmap)
    for ppn in range(12):
        for name in ("a", "b"):
            guests[name].write32(ppn * PAGE, 0x1000 + ppn)
        host.scan()                       # the pair becomes one shared page
    return env, host, vmms, guests


def _touch(host, name, ppn, done):
    """A fault that writes a fresh page (a simpy process)."""
    mpn, how = yield from host.obtain(name, ppn, True)
    host.machine.mem.page(mpn)[:4] = (0x2000 + ppn).to_bytes(4, "little")
    host.release(name)
    done.append(how)


def test_reclaim_takes_a_shared_page_from_every_sharer_when_nothing_else_is_left():
    for latency in (0, 1, 100):
        env, host, vmms, guests = _full_of_shared_pages(latency)
        assert host.stats()["shared_pages"] == 12 and host.machine.free_pages() == 3
        # Touch 8 fresh pages in each VM: only shared pages can make room.
        done = []

        for ppn in range(12, 20):
            for name in ("a", "b"):
                env.process(_touch(host, name, ppn, done))
                env.run()
        assert done == ["allocated"] * 16
        assert host.stats()["shared_pages"] < 12 and host.swap_outs > 0
        # Nothing lost, nothing crossed: each VM reads back what it wrote,
        # the shared pages' bytes from the disk.
        for name in ("a", "b"):
            for ppn in range(12):
                assert guests[name].read32(ppn * PAGE) == 0x1000 + ppn, (latency, name, ppn)
            for ppn in range(12, 20):
                assert guests[name].read32(ppn * PAGE) == 0x2000 + ppn, (latency, name, ppn)
        check_host(host)
        env.run()


def test_a_shared_page_touched_while_its_write_is_in_flight_is_not_taken():
    env, host, vmms, guests = _full_of_shared_pages(20_000)
    victim = host._pick()
    assert victim is not None and victim[0] is None       # a shared page
    mpn = victim[2]
    got = []

    def evict():
        got.append((yield from host._evict(*victim)))
    env.process(evict())
    env.run(until=env.now + 100)                          # the write is on its way
    name, ppn = sorted(host.sharers[mpn])[0]
    host._pin(name, mpn)                                  # a fault takes it meanwhile
    env.run()
    assert got == [None] and mpn in host.sharers          # still shared, nothing lost
    host.release(name)
    check_host(host)


def test_a_pin_ends_with_its_page_and_a_page_stays_pinned_while_any_holder_is():
    env, host, vmms, guests = _full_of_shared_pages(0)
    shared = sorted(host.sharers)[0]
    host._pin("a", shared)
    host._pin("b", shared)
    host.release("a")
    assert shared in host.pinned                      # b has made no progress yet
    host.release("b")
    assert shared not in host.pinned
    # a pins a page, the page is freed (a's own COW break of its last
    # sharer), b gets the same page: b's pin is b's, a's release keeps it
    mpn = host.machine.alloc("a")
    host._pin("a", mpn)
    host.machine.free(mpn)
    assert mpn not in host.pinned
    again = host.machine.alloc("b")
    assert again == mpn
    host._pin("b", again)
    host.release("a")
    assert host.pinned == {mpn: {"b"}}


def test_a_page_evicted_again_after_the_vmm_took_it_back_mid_write_keeps_its_record():
    """The VMM writes a page whose write-out is in flight (``back_now``
    takes it back and settles that transfer); the page is evicted again
    before the first transfer ends.  The first transfer's end leaves the
    second's in-flight record alone (it once deleted it: the page looked
    unbacked, and the second transfer's end failed)."""
    env = simpy.Environment()
    host = Host(env, 16 * PAGE, reserve=1, swap_latency=20_000)
    host.check = check_host
    pmap = PMap("a", GUEST_PAGES * PAGE, host.machine)
    host.attach("a", pmap, StandInVmm("a", host.machine), _Quiet(), lambda: False)
    guest = GuestPhys(pmap)
    guest.write32(5 * PAGE, 0x55)
    vm, mpn = host.vms["a"], pmap.mpn_of[5]
    ends = []

    def evict(mpn):
        ends.append((yield from host._evict(vm, 5, mpn)))
    env.process(evict(mpn))
    env.run(until=100)                              # the first write is on its way
    guest.write32(5 * PAGE + 4, 0x66)               # the VMM writes: taken back
    assert pmap.state(5) == "resident" and host.rescued == 1
    env.process(evict(pmap.mpn_of[5]))             # out again, behind the first
    env.run(until=100 + host.disk.cost)             # the first transfer ends
    assert ends == [None] and pmap.state(5) == "writing-out"
    env.run()
    assert ends == [None, mpn] and pmap.state(5) == "swapped"
    assert (guest.read32(5 * PAGE), guest.read32(5 * PAGE + 4)) == (0x55, 0x66)
    check_host(host)


def test_a_shared_page_let_go_and_shared_anew_during_its_write_keeps_the_new_contents():
    """All the sharers of a shared page being written to the disk break
    away, the page is freed, and its number becomes a shared page again
    with other contents before the write ends.  The write's end leaves the
    new page alone: the new sharers keep their own contents (the old ones
    once went to their swap slots, and they read another page's bytes)."""
    env = simpy.Environment()
    host = Host(env, 24 * PAGE, reserve=1, swap_latency=20_000)
    host.check = check_host
    guests = {}
    for name in ("a", "b"):
        pmap = PMap(name, GUEST_PAGES * PAGE, host.machine)
        host.attach(name, pmap, StandInVmm(name, host.machine), _Quiet(), lambda: False)
        guests[name] = GuestPhys(pmap)
        guests[name].write32(5 * PAGE, 0x1111)
    host.scan()
    (old,) = host.sharers
    got = []

    def evict():
        got.append((yield from host._evict(None, None, old)))
    env.process(evict())
    env.run(until=100)                               # the old contents on their way
    for name in ("a", "b"):
        guests[name].write32(5 * PAGE, 0x2222)       # copy-on-write: the page is freed
    assert old not in host.sharers
    for name in ("a", "b"):
        guests[name].write32(9 * PAGE, 0x3333)       # a's gets the freed number
    host.scan()
    assert host.sharers.get(old) == {("a", 9), ("b", 9)}
    env.run()
    assert got == [None]
    for name in ("a", "b"):
        assert (guests[name].read32(5 * PAGE), guests[name].read32(9 * PAGE)) == (0x2222, 0x3333)
    check_host(host)
