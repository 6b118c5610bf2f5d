"""A run you can stop anywhere and take back: the engine under the stepper.

A ``Session`` drives a ``System`` one simpy event at a time (``env.step()``)
while it listens to the trace bus.  While somebody listens, every VMM step
is its own simpy timeout (``vmm/base.py``), so the session can stop between
the steps of a fault; ``System.max_batch_insns`` bounds each CPU batch (1:
one instruction) and 0 holds the vCPU between batches, so a stop after a VM
entry comes before the guest runs again.

Positions.  A run is a function of the program, the configuration and the
sequence of batch limits given to its simpy events, which the session logs
(run-length encoded).  A position is a prefix of that log plus how many of
the trace events emitted so far have been *shown* (one simpy event can emit
several: ``micro`` shows them one at a time).  Going back replays the log
from the start in a fresh ``System``: the same program and configuration
give the same run, so the replayed machine is the one that was there.  The
instruction count recorded with each position checks it.

Stops.  A motion (``step``, ``next``, ``micro``, ``continue``) runs until
its condition holds.  Conditions on trace events (a fault begins, a fault of
a kind, an exit of a reason) stop at that event, inside the VMM's handling
if that is where it happened.  Conditions on the instruction stream (an
address breakpoint, a write to a watched va, an instruction count) are
checked between batches, so while they are armed batches are one
instruction long.  An event raised in the middle of a batch (an exception
the hardware delivers natively) is found by running batches, then replaying
up to the batch that raised it and running that one instruction at a time.

Positions and going back (``Pos``, ``Mark``, ``split_log``, the reverse
motions) are in ``session_history.py``, the stop loop in ``session_stop.py``.
"""

from __future__ import annotations

from collections import deque

from simpy.core import EmptySchedule

from ..errors import EmuError
from ..system import Config, System
from ..timetravel import Recorder, SnapshotStore
from ..timetravel.watch import AccessWatch
from .breakpoints import Breakpoint, Breakpoints, exit_reasons, fault_kinds
from .session_history import HistoryMixin, Mark, Pos, split_log
from .session_stop import RUN_BATCH, SEEK_BATCH, SEEK_FINE, StopLoopMixin  # noqa: F401 (re-export)
from .story import describe

KEEP_EVENTS = 4096    # trace events kept for the views (the oldest are dropped)
SNAPSHOT_EVENTS = 128  # ... and with each snapshot, for the views after going back there
EVENT_BYTES = 600     # memory of one kept event with its record (measured: ~550 bytes)


class Session(StopLoopMixin, HistoryMixin):
    """One guest run, driven event by event, with breakpoints and undo."""

    def __init__(self, image, config: Config | None = None, *,
                 store: SnapshotStore | None = None):
        self.image = image
        self.config = (config or Config()).validate()
        # Snapshots along the run (see ``_goto``); ``store``: their budget.
        self.recorder = Recorder(store, extra=self._snapshot_state,
                                 extra_bytes=self._snapshot_state_bytes)
        self._stepping = False             # inside ``env.step()`` (a snapshot's step)
        self.watch = AccessWatch()         # access watchpoints (``emu gdb``'s Z2-Z4)
        self.recorder.before_take = self.watch.uninstall
        self.recorder.after_take = self._rewatch
        self.origin = 0                    # no going back before this step (a debugger's write)
        self.log: list[list] = []          # [batch limit, simpy events] runs
        self.history: list[Mark] = []      # where each motion started (for back)
        self.breaks = Breakpoints()
        self.interrupted = False           # set by a SIGINT handler: stop soon
        self._boot()
        self._step(0)                      # to the first batch: the start
        self.shown_before = 0              # ``shown`` when the last motion began
        self.regs_before = self.registers()
        self.message = "at the start of the run"

    # --- the machine ----------------------------------------------------------
    def _boot(self) -> None:
        self.system = System(self.image, self.config)
        self.events: deque = deque(maxlen=KEEP_EVENTS)
        self.nevents = 0                   # trace events emitted so far
        self.shown = 0
        self.nsteps = 0
        self.system.bus.subscribe(self._on_event)
        self.recorder.store.clear()
        self.recorder.attach(self.system)
        self._rewatch()
        self.system.start()

    def _snapshot_state(self):
        """What a snapshot keeps of the session: the simpy events it stands
        after (a snapshot taken during a step stands at its end) and the
        trace events seen so far."""
        cut = (len(self.log), self.log[-1][1] if self.log else 0)   # the log so far
        events = tuple(self.events)[-SNAPSHOT_EVENTS:]
        return (self.nsteps + self._stepping, self.nevents, events, self._stepping, cut)

    @staticmethod
    def _snapshot_state_bytes(state, last) -> int:
        """The memory of the events ``state`` keeps that ``last`` (the
        snapshot before) does not keep already: the store's budget counts it."""
        new = len(state[2]) if last is None else min(len(state[2]), state[1] - last[1])
        return EVENT_BYTES * max(new, 0)

    def _rewatch(self) -> None:
        if self.watch:
            self.watch.install(self.system.mmu)

    def _restore(self, snap) -> None:
        """The machine of snapshot ``snap``; its processes put back where
        they waited (simpy events that are not the run's own steps)."""
        nsteps, nevents, events = snap.extra[:3]
        self.recorder.store.drop_after(lambda s: s.extra[0] <= nsteps)
        self.system = self.recorder.restore(snap)
        self.events = deque(events, maxlen=KEEP_EVENTS)
        self.nevents = nevents
        self.system.bus.subscribe(self._on_event)
        self._rewatch()
        self.recorder.enabled = False
        for _ in snap.restart:
            self.system.env.step()
        self.recorder.enabled = True
        self.nsteps = nsteps
        self.shown = min(self.shown, self.nevents)

    def _on_event(self, ev) -> None:
        extra = None
        if ev.kind == "deliver" and "pf" not in self.system.cpu.intercepts:
            extra = self.system.mmu.last_walk      # the walk that faulted, if it did
        self.events.append((ev, extra))
        self.nevents += 1

    def event(self, i: int):
        """(event, extra) of trace event number ``i``, or None if dropped."""
        j = i - (self.nevents - len(self.events))
        return self.events[j] if 0 <= j < len(self.events) else None

    def shown_events(self, first: int):
        """(number, event, extra) of the shown events from number ``first``."""
        first = max(first, self.nevents - len(self.events))
        for i in range(first, self.shown):
            ev, extra = self.event(i)
            yield i, ev, extra

    @property
    def finished(self) -> bool:
        return self.system.finished

    @property
    def mode(self) -> str:
        return self.config.mode

    def registers(self) -> dict:
        return self.system.cpu.registers()

    def position(self) -> Pos:
        return Pos(self.nsteps, self.shown, self.system.cpu.icount)

    def _step(self, limit) -> bool:
        """Process one simpy event with batches of at most ``limit``
        instructions (None: no limit, 0: hold); False at the end."""
        s = self.system
        s.max_batch_insns = limit
        self._stepping = True
        try:
            s.env.step()
        except EmptySchedule:
            return False
        finally:
            self._stepping = False
        self.nsteps += 1
        if self.log and self.log[-1][0] == limit:
            self.log[-1][1] += 1
        else:
            self.log.append([limit, 1])
        return True

    def _settle(self) -> None:
        """Let the VMM finish what it is doing; hold before the next batch."""
        while not self.system.held and not self.finished:
            if not self._step(0):
                break

    def _goto(self, pos: Pos) -> None:
        """Put the machine at ``pos`` (at or before the present): restore the
        last snapshot at or before it, replay the log from there."""
        if pos.nsteps < self.origin:
            raise EmuError("no history before the debugger changed the machine")
        if pos.nsteps != self.nsteps:
            log = self.log
            snap = self.recorder.store.latest(lambda s: s.extra[0] <= pos.nsteps)
            if snap is None:
                self.log = []
                self._boot()
                rest = log
            else:
                self._restore(snap)
                self.log, rest = split_log(log, snap.extra[4], int(snap.extra[3]))
            left = pos.nsteps - self.nsteps
            for limit, count in rest:
                for _ in range(min(count, left)):
                    self._step(limit)
                left -= min(count, left)
                if not left:
                    break
            self.recorder.store.drop_after(lambda s: s.extra[0] <= pos.nsteps)
        self.shown = min(pos.shown, self.nevents)
        if self.system.cpu.icount != pos.icount:
            raise EmuError(f"replay diverged: {self.system.cpu.icount:,} instructions "
                           f"where the run had {pos.icount:,} (a nondeterministic run?)")

    def snapshot_here(self) -> None:
        """Keep a snapshot of this place (the vCPU held before a batch), so
        that coming back here is a restore, not a replay."""
        last = self.recorder.store.last
        if self.system.held and not self.finished and (
                last is None or last.extra[0] != self.nsteps):
            self.recorder.take(self.system)

    # --- motions ------------------------------------------------------------------
    def _begin(self, command: str) -> Mark:
        mark = Mark(self.position(), self.shown_before, self.regs_before, self.message,
                    command)
        self.interrupted = False
        self.regs_before = self.registers()
        self.shown_before = self.shown
        return mark

    def _end(self, start: Mark, message: str) -> str:
        s = self.system
        self.snapshot_here()
        if self.position() != start.pos:
            self.history.append(start)
            if self.finished and self.shown == self.nevents:
                message += f" -- the run is over: {s.outcome}, {s.message}"
        elif self.finished:
            message = f"the run is over ({s.outcome}, {s.message}): 'back' goes back"
        self.message = message
        return message

    def step(self, n: int = 1) -> str:
        """Run ``n`` instructions (the VMM's work on the way included)."""
        start = self._begin(f"step {n}" if n != 1 else "step")
        self.shown = self.nevents
        target = self.system.cpu.icount + n
        # hold: each batch starts from a held vCPU, after any instruction the
        # VMM retired itself (port I/O, CR writes), so it runs exactly the rest.
        why = self._advance(target=target, hold=True)
        done = self.system.cpu.icount - start.pos.icount
        msg = why or f"stepped {done:,} instruction{'s' if done != 1 else ''}"
        return self._end(start, msg)

    def stepi(self) -> str:
        """Run to the next place where eip or the instructions retired
        changed, held before a batch: one instruction, or the delivery of
        an event to its handler (a debugger's stepi)."""
        start = self._begin("stepi")
        self.shown = self.nevents
        s, cpu = self.system, self.system.cpu
        self._settle()
        here = (cpu.icount, cpu.eip)
        self.watch.hits.clear()
        if self.watch:
            self.watch.install(s.mmu)
        why = None
        while not self.finished:
            if not self._step(0 if not s.held else 1):
                break
            if s.held and ((cpu.icount, cpu.eip) != here or self.watch.hits):
                why = "watchpoint" if self.watch.hits else None
                break
        self.shown = self.nevents
        return self._end(start, why or "stepi")

    def next(self) -> str:
        """Run to the next fault or VM exit (port I/O exits are passed).
        Where the hardware delivers #PF to the guest itself (natively, and
        under nested paging) a fault is that delivery; under shadow paging
        every #PF is an exit."""
        start = self._begin("next")
        self.shown = self.nevents
        vmm = self.system.vmm
        delivered = "pf" not in self.system.cpu.intercepts

        def stop(ev):
            if delivered and ev.kind == "deliver" and ev.data.get("source") == "fault":
                return "next: the hardware delivers an exception to the guest"
            if vmm is None:
                return None
            if ev.step == 1:
                return "next: a fault begins (step 1 of 6)"
            if ev.kind == "vm_exit" and ev.step is None and ev.data.get("reason") != "io":
                return f"next: VM exit ({ev.data.get('reason')})"
            return None
        why = self._advance(stop=stop, seek=delivered)
        return self._end(start, why or "no more faults or exits")

    def cont(self) -> str:
        """Run to a breakpoint or the end."""
        start = self._begin("continue")
        self.shown = self.nevents
        why = self._advance()
        return self._end(start, why or "continued to the end")

    def micro(self) -> str:
        """Show the next trace event: inside a fault, the next VMM step."""
        start = self._begin("micro")
        if self.shown < self.nevents:
            self.shown += 1                 # already happened in this simpy event
        else:
            self._advance(stop=lambda ev: "micro", seek=True, hold=True, breaks=False)
            self.shown = min(self.shown, start.pos.shown + 1)
        if self.shown > start.pos.shown:
            ev = self.event(self.shown - 1)[0]
            step = f" (step {ev.step})" if ev.step else ""
            return self._end(start, f"micro{step}: {describe(ev)}")
        return self._end(start, "micro: no more events")

    def back(self, n: int = 1) -> str:
        """Undo the last ``n`` motions (replaying the run up to there)."""
        if not self.history:
            return "back: already at the start of the run"
        n = max(1, min(n, len(self.history)))
        mark = self.history[-n]
        undone = [m.command for m in self.history[-n:]]
        del self.history[-n:]
        self._goto(mark.pos)
        self.shown_before, self.regs_before = mark.shown_before, mark.regs_before
        self.message = mark.message
        what = ", ".join(undone) if n <= 4 else f"{n} motions"
        if not self.history:
            return f"back: undid {what}; at the start of the run"
        return f"back: undid {what}; at {mark.pos.icount:,} instructions ({mark.message})"


    # --- breakpoints ----------------------------------------------------------------
    def fault_kinds(self) -> list[str]:
        return fault_kinds(self.system)

    def exit_reasons(self) -> list[str]:
        return exit_reasons(self.system)

    def add_breakpoint(self, kind: str, value, text: str) -> Breakpoint:
        return self.breaks.add(self.system, kind, value, text)

    def delete_breakpoint(self, number: int | None) -> int:
        return self.breaks.delete(number)

    @property
    def breakpoints(self) -> list[Breakpoint]:
        return self.breaks.items
