"""The recorder: snapshots of a run taken as it goes.

``Recorder.attach(system)`` puts a hook on the system's CPU: every batch
the vCPU starts goes through it, and when a snapshot is due (by host time,
or every N batches for tests) and the machine is quiescent there
(``snapshot.restart_order``), it takes one into its ``SnapshotStore``.  The
hook is an attribute of the CPU object and costs a comparison or two a
batch; the CPU and the system are not changed otherwise.

Spacing.  By default a snapshot is due ``interval`` seconds of the
process's CPU time after the last one, and never sooner than
``1 / overhead`` times the CPU time the last one took, so taking snapshots
costs at most about ``overhead`` of the run's host time whatever the
machine's size; going back then replays at most about ``interval`` of host
time.  (On CPython 3.11 the first snapshot also costs the run some speed
for good: pickling an object makes its attribute dictionary a real dict,
and attribute access through a real dict is slower than through the
inline values the interpreter uses before; about 10% on a faulting
kernel under shadow paging.)
"""

from __future__ import annotations

import sys
import time

from . import snapshot as snap_mod
from .store import SnapshotStore

INTERVAL = 0.02        # CPU seconds of running between two snapshots, at least
OVERHEAD = 0.05        # CPU time spent taking snapshots, at most this fraction

# The process's CPU time: the spacing is the same on a busy machine as on
# an idle one (wall-clock time would take more snapshots, for the same
# work, where other processes share the CPUs).
_clock = time.process_time


class Recorder:
    """Takes snapshots of one running ``System`` (see the module doc)."""

    def __init__(self, store: SnapshotStore | None = None, *, interval: float = INTERVAL,
                 overhead: float = OVERHEAD, every: int | None = None,
                 at: list[int] | None = None, extra=None, extra_bytes=None):
        """``every``: a snapshot every that many batches, or ``at``: one at
        the first batch from each of these instruction counts (both
        deterministic, for tests) instead of by host time; ``extra()``: the
        driver's state to keep with each snapshot, ``extra_bytes(extra,
        last)``: the memory it holds that the last snapshot's does not."""
        self.store = store if store is not None else SnapshotStore()
        self.interval = interval
        self.overhead = overhead
        self.every = every
        self.at = sorted(at) if at is not None else None
        self.extra = extra
        self.extra_bytes = extra_bytes
        self.system = None
        self.enabled = True
        self.seconds = 0.0             # host time spent taking snapshots
        self.declined = 0              # due, but the machine was not quiescent
        self._next = 0.0
        self._batches = 0
        self._next_icount = 0          # no look at the clock before this count
        self._mark = (0.0, 0)          # (CPU time, instructions) at the last look
        self._hook = None
        self.before_take = self.after_take = None   # callables around each snapshot

    # --- the hook -----------------------------------------------------------------------
    def attach(self, system) -> None:
        """Take snapshots of ``system`` from its next batch on."""
        if not getattr(system, "_own_host", True):
            raise snap_mod.SnapshotError(
                "time travel works on a single VM: this one shares its machine with others")
        self.detach()
        cpu = system.cpu
        run = type(cpu).run.__get__(cpu)
        vcpu = type(system)._vcpu.__code__

        def batch(max_insns, max_cycles, irq=True):
            if self.enabled and self._due() and sys._getframe(1).f_code is vcpu:
                if self.take(system) is not None and self.at:
                    while self.at and self.at[0] <= cpu.icount:
                        self.at.pop(0)
            return run(max_insns, max_cycles, irq)
        cpu.run = batch
        self.system = system
        self._hook = batch
        self._next_icount = 0

    def detach(self) -> None:
        if self.system is not None and vars(self.system.cpu).get("run") is self._hook:
            del vars(self.system.cpu)["run"]
        self.system = None
        self._hook = None

    def _due(self) -> bool:
        if self.at is not None:
            return bool(self.at) and self.system.cpu.icount >= self.at[0]
        if self.every is not None:
            self._batches += 1
            return self._batches % self.every == 1 or self.every == 1
        # The clock is read only once the instructions retired since the last
        # look say it may be time (a system call on every batch would cost
        # the run about 1%).
        icount = self.system.cpu.icount
        if icount < self._next_icount:
            return False
        now = _clock()
        if now >= self._next:
            return True
        if now > self._mark[0] and icount > self._mark[1]:
            rate = (icount - self._mark[1]) / (now - self._mark[0])
            self._next_icount = icount + int((self._next - now) * rate * 0.8)
        self._mark = (now, icount)
        return False

    def take(self, system) -> snap_mod.Snapshot | None:
        """A snapshot now, if the machine is quiescent (else None): from the
        hook at the start of a batch, or by the driver while the vCPU is held."""
        t0 = _clock()
        order = snap_mod.restart_order(system)
        if order is None:
            self.declined += 1
            return None
        if self.before_take is not None:
            self.before_take()
        last = self.store.last
        extra = self.extra() if self.extra is not None else None
        size = self.extra_bytes(extra, last.extra if last is not None else None) \
            if self.extra_bytes is not None else 0
        snap = snap_mod.capture(system, last.pages if last is not None else None, order=order,
                                extra=extra, extra_bytes=size,
                                leave_out=(self._hook,) if self._hook is not None else ())
        if self.after_take is not None:
            self.after_take()
        self.store.add(snap)
        t1 = _clock()
        self.seconds += t1 - t0
        self._next = t1 + max(self.interval, (t1 - t0) / self.overhead)
        self._mark = (t1, system.cpu.icount)
        return snap

    # --- going back -----------------------------------------------------------------------
    def restore(self, snap: snap_mod.Snapshot, *, console_sink=None):
        """A new system in the state of ``snap``, its processes started,
        recorded from there on."""
        system = snap_mod.restore(snap, console_sink=console_sink)
        self.attach(system)
        self._next = _clock() + self.interval
        self._mark = (self._next - self.interval, system.cpu.icount)
        self._batches = 1
        return system

    def stats(self) -> dict:
        out = self.store.stats()
        out.update(seconds=round(self.seconds, 6), declined=self.declined)
        return out
