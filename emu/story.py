"""Fault stories: the trace events of one fault, grouped as its six steps.

A #PF exit under shadow paging emits, in order (docs/design.md, "the six
steps"):

    1 shadow_walk        the hardware's walk of the shadow that missed
    2 vm_exit            the exit: reason, eip, error code
      guest_walk         the VMM's walk of the guest's table (gpde, gpte)
    3 <kind>_fault       the classification: true, hidden, dirty, tracing ...
      pmap_lookup        the PMap's machine page (found, allocated, swapped in)
      inject             (a true fault) #PF injected into the guest
    4 shadow_fill        the spte written (``emulate``: the write emulated)
    5 vm_entry           back to the guest: restart, emulate, or inject
    6 shadow_walk, tlb_fill   the restart's walk succeeds and fills the TLB

Nested paging tells the same story with ``nested_walk`` / ``nested_fault``
/ ``nested_fill`` (an EPT violation names the guest-physical address: no
guest walk).  Where the hardware delivers the guest's own faults (natively,
and under nested paging) each delivery is a story of its own, of kind
``native``, complete in one event.

``StoryBuilder`` is fed the events of one VM in order, one at a time, and
returns the stories each event completes; ``build_stories(events, mode)``
does it for a list.  A story is complete at its step 6 (the restart's TLB
fill), at its VM entry when that injects a fault or ends an emulation, when
the restart goes another way (the next fault, VM exit or delivered fault
comes first), or at the end of the run (``ended``).  A fault taken while
the VMM emulates an instruction is a story of its own, nested in the one
being handled.  Narration (``emu.ui.narrate``), the stepper's fault panel,
``emu run --stories`` and the lab checker all read stories from here.

    builder = StoryBuilder("shadow")
    system.bus.subscribe(lambda ev: [print(s.kind, hex(s.va)) for s in builder.feed(ev)])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .trace import Event

KINDS = ("hidden", "true", "dirty", "tracing", "unsync", "wp-emulate", "cow", "nested",
         "native")
FILLS = ("shadow_fill", "nested_fill", "emulate")


@dataclass(frozen=True)
class Access:
    """What the faulting access was: ``op`` read, write or fetch (or
    ``data``: an EPT violation's read or write, before its exit says which,
    where its walk's event does not carry the error code);
    ``user`` True at CPL 3, False at CPL 0, None where the record does not
    say (an EPT violation's error code has only the write bit)."""

    op: str
    user: bool | None

    def __str__(self) -> str:
        op = "data access" if self.op == "data" else self.op
        if self.user is None:
            return op
        return f"{op}, {'user' if self.user else 'kernel'}"


@dataclass(eq=False)
class FaultStory:
    """One fault, as far as its events have come (in a notebook it shows
    as the narration tells it).

    ``steps`` maps a step (1-6) to its events; an event without a step of
    its own (a TLB miss or walk while the VMM emulates) belongs to the step
    reached.  The accessors below find the events a teacher asks about."""

    first: Event                    # step 1's walk (or, natively, the delivery)
    start: int = 0                  # the number of its first event in the stream
    kind: str | None = None         # one of KINDS, once step 3 (natively: at once)
    steps: dict[int, list[Event]] = field(default_factory=dict)
    step: int = 1                   # the step reached
    last: int = 0                   # the number of its last event
    entered: str | None = None      # the VM entry's action: resume, inject, emulate
    done: bool = False
    ended: bool = False             # the run ended before the story did
    miss: Event | None = None       # the TLB miss just before step 1, if any
    extra: object = None            # what the feeder gave with the first event
    arrived: list[Event] = field(default_factory=list)   # its events, in order

    # --- building ---------------------------------------------------------------------
    def add(self, i: int, ev: Event, step: int | None = None) -> None:
        step = step or ev.step or self.step
        self.steps.setdefault(step, []).append(ev)
        self.arrived.append(ev)
        self.step = max(self.step, step)
        self.last = i
        if ev.kind.endswith("_fault") and ev.step == 3:
            self.kind = ev.kind[:-len("_fault")]

    # --- reading ----------------------------------------------------------------------
    @property
    def va(self) -> int:
        return self.first.va or 0

    @property
    def native(self) -> bool:
        """A fault the hardware delivered to the guest itself (no VM exit)."""
        return self.kind == "native"

    @property
    def cycle(self) -> int:
        return self.first.cycle

    @property
    def vcpu(self) -> int:
        return self.first.vcpu

    def events(self, step: int | None = None) -> list[Event]:
        """The events of ``step``, or all of them, in the order they came."""
        if step is not None:
            return list(self.steps.get(step, []))
        return list(self.arrived)

    def find(self, kind: str, step: int | None = None) -> Event | None:
        """The first event of ``kind`` (in ``step``, or in any)."""
        for ev in self.events(step):
            if ev.kind == kind:
                return ev
        return None

    @property
    def exit(self) -> Event | None:
        """The VM exit (step 2)."""
        return self.find("vm_exit", 2)

    @property
    def error_code(self) -> int | None:
        """The #PF error code of the access (natively: the delivered one)."""
        if self.first.kind == "nested_walk" and "error_code" not in self.first.data:
            ev = self.exit          # a walk that does not carry it: the exit's
            return ev.data.get("error_code") if ev is not None else None
        return self.first.data.get("error_code")

    @property
    def access(self) -> Access:
        """Read, write or fetch; user or kernel where the record says."""
        ec = self.error_code or 0
        walk = self.first.data.get("walk")
        if walk:
            fetch = bool(walk.get("fetch"))
        else:
            fetch = bool(self.miss is not None and self.miss.data.get("fetch"))
        op = "write" if ec & 2 else "fetch" if fetch else "read"
        if self.first.kind != "nested_walk":
            return Access(op, bool(ec & 4))
        if op == "read" and self.error_code is None:
            op = "data"             # the exit's error code tells read from write
        return Access(op, None)

    @property
    def guest_walk(self) -> dict | None:
        """The VMM's walk of the guest's table (step 2): levels, values
        before and after (the walk sets A/D as the hardware would)."""
        ev = self.find("guest_walk", 2)
        return ev.data.get("walk") if ev is not None else None

    @property
    def pmap(self) -> Event | None:
        """The PMap lookup (step 3): ppn, mpn, how it was found."""
        return self.find("pmap_lookup")

    @property
    def fill(self) -> Event | None:
        """What step 4 wrote: a ``shadow_fill``, ``nested_fill`` or ``emulate``."""
        for ev in self.events():
            if ev.kind in FILLS:
                return ev
        return None

    @property
    def restart_fill(self) -> Event | None:
        """The restart's TLB fill (step 6)."""
        return self.find("tlb_fill", 6)

    # --- output -----------------------------------------------------------------------
    def to_json(self) -> dict:
        """A plain record (``emu run --stories`` writes one a line)."""
        out = {"kind": self.kind, "va": self.va, "cycle": self.cycle, "vcpu": self.vcpu,
               "access": {"op": self.access.op, "user": self.access.user},
               "error_code": self.error_code, "step": self.step, "done": self.done,
               "ended": self.ended, "entered": self.entered}
        ex = self.exit
        if ex is not None:
            out["exit"] = {"reason": ex.data.get("reason"), "eip": ex.data.get("eip"),
                           "error_code": ex.data.get("error_code")}
            if "gpa" in ex.data:
                out["exit"]["gpa"] = ex.data["gpa"]
        gw = self.guest_walk
        if gw is not None:
            out["guest_walk"] = gw
        pm = self.pmap
        if pm is not None:
            out["pmap"] = {k: pm.data.get(k) for k in ("ppn", "mpn", "how")}
        fill = self.fill
        if fill is not None:
            out["fill"] = {"kind": fill.kind, **fill.data}
        tf = self.restart_fill
        if tf is not None:
            out["restart_fill"] = {"va": tf.va, **tf.data}
        out["steps"] = {str(s): [ev.to_json() for ev in evs]
                        for s, evs in sorted(self.steps.items())}
        return out


def _delivered(ev: Event) -> bool:
    """An exception the hardware delivered to the guest itself."""
    return ev.kind == "deliver" and ev.data.get("source") == "fault"


class StoryBuilder:
    """Groups one VM's trace events into ``FaultStory`` records.

    ``mode``: native, shadow or nested (what can fault: natively only the
    hardware's deliveries; under shadow paging the #PF exits; under nested
    paging the EPT violations and the hardware's deliveries)."""

    def __init__(self, mode: str):
        self.vmm = mode != "native"
        self.hw_faults = mode != "shadow"
        self.stack: list[FaultStory] = []      # being handled, innermost last
        self.awaiting: FaultStory | None = None   # resumed: its step 6 may come
        self.last: FaultStory | None = None    # the story the last event touched
        self.count = 0
        self._miss: Event | None = None

    def feed(self, ev: Event, index: int | None = None, extra=None) -> list[FaultStory]:
        """Take the next event; return the stories it completes (oldest first).
        ``index``: its number in the stream (default: a count); ``extra``:
        anything to keep with a story's first event."""
        i = self.count if index is None else index
        self.count = i + 1
        done: list[FaultStory] = []
        miss, self._miss = self._miss, (ev if ev.kind == "tlb_miss" else None)
        if self.hw_faults and _delivered(ev):
            self._close_awaiting(done)
            st = FaultStory(ev, start=i, last=i, kind="native", extra=extra, done=True,
                            miss=miss if miss is not None and miss.va == ev.va else None)
            st.add(i, ev, step=1)
            self.last = st
            done.append(st)
            return done
        if not self.vmm:
            return done
        if ev.kind == "run_end":
            return done + self.finish()
        if ev.step == 1:
            self._close_awaiting(done)
            st = FaultStory(ev, start=i, last=i, extra=extra,
                            miss=miss if miss is not None and miss.va == ev.va else None)
            st.add(i, ev)
            self.stack.append(st)
            self.last = st
            return done
        aw = self.awaiting
        if (aw is not None and ev.step == 6 and ev.va is not None
                and ev.va >> 12 == aw.va >> 12):
            aw.add(i, ev)
            self.last = aw
            if ev.kind == "tlb_fill":
                aw.done = True
                self.awaiting = None
                done.append(aw)
            return done
        if self.stack:
            top = self.stack[-1]
            top.add(i, ev)
            self.last = top
            if ev.kind == "vm_entry" and ev.step == 5:
                self.stack.pop()
                top.entered = ev.data.get("action")
                if top.entered == "resume":
                    self._close_awaiting(done)
                    self.awaiting = top
                else:
                    top.done = True
                    done.append(top)
            return done
        if ev.kind == "vm_exit":
            self._close_awaiting(done)     # the restart went another way
        return done

    def _close_awaiting(self, done: list) -> None:
        aw, self.awaiting = self.awaiting, None
        if aw is not None:
            aw.done = True
            done.append(aw)

    def finish(self) -> list[FaultStory]:
        """The run ended: the stories still open, each ``done`` and those
        cut short ``ended``."""
        out = []
        self._close_awaiting(out)
        for st in out:
            st.ended = True         # resumed, but the run ended before the restart
        for st in self.stack:
            st.done = st.ended = True
        out += self.stack
        self.stack = []
        return out


def build_stories(events: Iterable[Event], mode: str) -> list[FaultStory]:
    """Every story of ``events`` (one VM's, in order), including the
    stories still open at the end of the list."""
    builder = StoryBuilder(mode)
    out: list[FaultStory] = []
    for ev in events:
        out += builder.feed(ev)
    out += builder.finish()
    return out


__all__ = ["KINDS", "Access", "FaultStory", "StoryBuilder", "build_stories"]
