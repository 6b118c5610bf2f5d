"""Going backwards through a run: reverse-step, reverse-continue (and the
replay that last-write uses too, ``lastwrite.py``).

A search never disturbs the session: it restores a snapshot into a
*throwaway* machine and runs it forward instruction by instruction, the
vCPU held between batches of one instruction (a "held point" after each),
watching for what it looks for, up to the present.  The answer is a place:
a snapshot, a number of held points after it and, for a trace event, which
event of the next advance.  Only then does the session go there, by the
same steps, so its log stays a faithful recipe of where it is.

Nothing found between the newest snapshot and the present: the search
tries the interval before it, and so on back to the start of the run (or
to the last write a debugger made, ``Session.origin``).

Replaying one instruction per batch gives the machine the same run as the
batches the session took forward (the timer counts instructions, exits
happen at the same instructions); DECISIONS.md says where that needs a
split TLB.  The search checks it: a replay that misses the present is
reported as diverged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from simpy.core import EmptySchedule

from ..system import System
from ..timetravel import snapshot as snapmod
from ..timetravel.watch import AccessWatch
from .breakpoints import event_hit

MAX_POINTS = 5_000_000      # held points one search may replay


class SearchInterrupted(Exception):
    """A search stopped by Ctrl-C (``session.interrupted``): the session
    has not moved."""


def check_interrupted(session) -> None:
    if session.interrupted:
        raise SearchInterrupted


@dataclass(frozen=True)
class Place:
    """Where a search stopped: ``points`` held points after ``snap`` (None:
    the start of the run), then ``event`` trace events into the next advance."""

    snap: object
    points: int
    event: int | None
    why: str
    prefix: tuple = ()      # (batch limit, held points) advanced first (a coarse approach)


def advance_held(step, system, limit: int = 1) -> bool:
    """From one held point to the next: a batch of ``limit`` instructions,
    then whatever the machine does until the vCPU is held again.
    ``step(limit)`` processes one simpy event; False when the run is over."""
    while system.held and system.outcome is None:
        if not step(limit):
            return False
    while not system.held:
        if system.outcome is not None or not step(0):
            return False
    return system.outcome is None


class Throwaway:
    """A machine restored from a snapshot (or booted), held at its start."""

    def __init__(self, session, snap):
        if snap is None:
            system = System(session.image, session.config)
            system.max_batch_insns = 0
            system.start()
        else:
            system = snapmod.restore(snap)
            system.max_batch_insns = 0
        self.system = system
        self.events: list = []
        system.bus.subscribe(self.events.append)
        self.watch = AccessWatch()               # the session's watchpoints, its own hits
        self.watch.watches = list(session.watch.watches)
        self.watch._pages()
        if self.watch:
            self.watch.install(system.mmu)
        while not system.held and system.outcome is None:
            if not self.step(0):
                break

    def step(self, limit) -> bool:
        self.system.max_batch_insns = limit
        try:
            self.system.env.step()
        except EmptySchedule:
            return False
        return True

    def close(self) -> None:
        if self.watch:
            self.watch.uninstall()


def start_points(session):
    """The snapshots to search from, newest first, then None (the start)."""
    here = session.nsteps
    snaps = [s for s in session.recorder.store if s.extra[0] <= here
             and s.extra[0] >= session.origin]
    yield from reversed(snaps)
    if session.origin == 0:
        yield None


APPROACH = 16       # a reverse-step replays its last 16-32 instructions one at a time


def search(session, look, *, coarse: bool = False) -> Place | None:
    """The last place before the present that ``look(t, k, before, events)``
    names as ``(points, event or None, why)``; None if there is none.
    ``coarse``: what ``look`` wants is near the present (the instruction
    before it): the replay gets there in long batches that stop short of
    the present, then goes one instruction at a time.  Ctrl-C (the
    session's ``interrupted``) raises ``SearchInterrupted``."""
    end = _place(session.system)
    inclusive = False
    for snap in start_points(session):
        check_interrupted(session)
        found, start, approached = _scan(session, snap, end, look, inclusive, coarse)
        if found is None and approached:
            found, start, _ = _scan(session, snap, end, look, inclusive)
        if found is not None:
            return found
        if start != end:
            end, inclusive = start, True      # that snapshot's place: not looked at yet
    return None


def _place(system) -> tuple:
    """Where a machine is, for a search: (icount, eip, cycle, ended).  A
    fault that ends the run may take no time and retire nothing: the
    place before it differs from the end only in being alive."""
    cpu = system.cpu
    return cpu.icount, cpu.eip, int(system.env.now), system.outcome is not None


def _approach(session, t, end) -> tuple:
    """Advance throwaway ``t`` towards ``end`` in batches that each stop at
    least ``APPROACH`` instructions before it (a batch retires at most its
    limit, and the VMM's handling that follows a few more at most); the
    (batch limit, held points) that did it, for ``Place.prefix``."""
    system = t.system
    cpu = system.cpu
    prefix = []
    while True:
        check_interrupted(session)
        left = end[0] - cpu.icount
        if left <= 2 * APPROACH or int(system.env.now) >= end[2]:
            return tuple(prefix)
        limit = left - APPROACH
        if not advance_held(t.step, system, limit):
            return tuple(prefix)
        prefix.append((limit, 1))


def _scan(session, snap, end, look, inclusive: bool, approach: bool = False):
    """Replay from ``snap`` up to ``end`` (a ``_place``; looked at too if
    ``inclusive``), one instruction at a time (with ``approach``, long
    batches first, see ``_approach``): the last place ``look`` names,
    ``snap``'s state, and whether it approached."""
    t = Throwaway(session, snap)
    try:
        cpu, system = t.system.cpu, t.system
        start = _place(system)
        if start == end:
            return None, start, False
        prefix = _approach(session, t, end) if approach else ()
        found = None
        for k in range(1, MAX_POINTS):
            if k & 1023 == 0:
                check_interrupted(session)
            before = (cpu.icount, cpu.eip)
            n0 = len(t.events)
            if t.watch:
                t.watch.hits.clear()
            alive = advance_held(t.step, system)
            now = _place(system)
            if now[2] > end[2] or (now == end and not inclusive):
                break
            hit = look(t, k, before, t.events[n0:])
            if hit is not None:
                found = Place(snap, hit[0], hit[1], hit[2], prefix)
            if now == end or not alive:
                break
        return found, start, bool(prefix)
    finally:
        t.close()


def goto_place(session, place: Place) -> None:
    """Put the session at ``place`` (its log rewritten from the snapshot)."""
    snap = place.snap
    if snap is None:
        session.log = []
        session._boot()
        session._step(0)
    else:
        _restore_held(session, snap)
    for limit, count in place.prefix:
        for _ in range(count):
            advance_held(session._step, session.system, limit)
    for _ in range(place.points):
        if not advance_held(session._step, session.system):
            break
    if place.event is not None:
        n0 = session.nevents
        s = session.system
        while session.nevents - n0 <= place.event:
            if not session._step(1 if s.held else 0):
                break
        session.shown = n0 + place.event + 1
    else:
        session.shown = session.nevents


def _restore_held(session, snap) -> None:
    """Restore ``snap`` with the vCPU held at the batch it stands at."""
    from .session import split_log
    nsteps, nevents, events, in_step, cut = snap.extra
    log = session.log
    store = session.recorder.store
    store.drop_after(lambda s: s.extra[0] < nsteps or (s is snap and not in_step))
    session.system = session.recorder.restore(snap)
    session.system.max_batch_insns = 0
    from collections import deque

    from .session import KEEP_EVENTS
    session.events = deque(events, maxlen=KEEP_EVENTS)
    session.nevents = nevents
    session.system.bus.subscribe(session._on_event)
    session._rewatch()
    session.recorder.enabled = False
    for _ in snap.restart:
        session.system.env.step()
    session.recorder.enabled = True
    session.nsteps = nsteps
    session.log = split_log(log, cut)[0]
    if in_step:                         # the step it stood in, held before its batch
        if session.log and session.log[-1][0] == 0:
            session.log[-1] = [0, session.log[-1][1] + 1]
        else:
            session.log.append([0, 1])
    session.snapshot_here()


# --- what to look for ------------------------------------------------------------------

def previous_instruction(session):
    """look(): every held point whose (icount, eip) differs from now -- and,
    when the run has ended, every one where it had not: a fault that ends
    the run (a triple fault, a bus error) retires nothing, and the place
    before it is the faulting instruction itself, alive."""
    cpu = session.system.cpu
    now = (cpu.icount, cpu.eip)
    ended = session.system.outcome is not None

    def look(t, k, before, events):
        c = t.system.cpu
        if (c.icount, c.eip) != now:
            return k, None, "back one instruction"
        if ended and t.system.outcome is None:
            return k, None, "back before the fault that ended the run"
        return None
    return look


def breakpoint_hits(session, *, faults_when_none: bool = True):
    """look(): a breakpoint a forward ``continue`` would stop at (addresses,
    faults, exits, watchpoints); with none set, the start of a fault or VM
    exit (where ``next`` stops)."""
    bps = session.breakpoints
    addrs = {bp.value: bp for bp in bps if bp.kind == "addr"}
    event_bps = [bp for bp in bps if bp.kind in ("fault", "exit")]
    writes = [bp for bp in bps if bp.kind == "write"]
    plain = not bps and not session.watch and faults_when_none
    delivered = "pf" not in session.system.cpu.intercepts
    native = session.system.vmm is None

    def fault_start(ev):
        if delivered and ev.kind == "deliver" and ev.data.get("source") == "fault":
            return "the hardware delivers an exception to the guest"
        if native:
            return None
        if ev.step == 1:
            return "a fault begins (step 1 of 6)"
        if ev.kind == "vm_exit" and ev.step is None and ev.data.get("reason") != "io":
            return f"VM exit ({ev.data.get('reason')})"
        return None

    def look(t, k, before, events):
        hit = None
        for j, ev in enumerate(events):
            why = fault_start(ev) if plain else event_hit(ev, event_bps, addrs)[0]
            if why is not None:
                hit = (k - 1, j, why)
        if t.watch and t.watch.hits:
            h = t.watch.hits[-1]
            hit = (k, None, f"watchpoint: {'write' if h.write else 'read'} of "
                            f"va {h.va:#010x}")
        c = t.system.cpu
        if c.eip in addrs and (c.icount, c.eip) != before:
            hit = (k, None, f"breakpoint {addrs[c.eip].number} {addrs[c.eip].describe()}")
        if writes:
            from .probe import Probe
            probe = Probe(t.system)
            for bp in writes:
                pa = probe.va_to_pa(bp.value)
                data = probe.read_pa(pa, 4) if pa is not None else None
                new = (pa, struct.unpack("<I", data)[0]) if data is not None else (None, None)
                old = seen.get(bp.number)
                seen[bp.number] = new
                if old is not None and old[0] is not None and old[0] == new[0] \
                        and old[1] != new[1]:
                    hit = (k, None, f"breakpoint {bp.number} {bp.describe()}: "
                                    f"{old[1]:#010x} -> {new[1]:#010x}")
        return hit
    seen: dict = {}
    return look
