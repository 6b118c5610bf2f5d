"""The trace bus: immutable events that every layer emits and none prints.

An ``Event`` is named like a tracepoint (``tlb_miss``, ``vm_exit``,
``hidden_fault`` ...), stamped with the simulated cycle, the vCPU, the va it
concerns and, where one applies, the step (1-6) of a virtualized translation
as docs/design.md numbers them.  Statistics, the console, breakpoints and
exporters subscribe to the same bus.  Emitters test ``bus.active`` first, so
a run with nobody listening pays one attribute test per would-be event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    cycle: int
    vcpu: int = 0
    va: int | None = None
    step: int | None = None
    data: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"kind": self.kind, "cycle": self.cycle, "vcpu": self.vcpu}
        if self.va is not None:
            out["va"] = self.va
        if self.step is not None:
            out["step"] = self.step
        out.update(self.data)
        return out


class TraceBus:
    """Subscribers get every event, or the kinds they asked for."""

    def __init__(self) -> None:
        self._subs: list[tuple[Callable[[Event], None], frozenset | None]] = []
        self.active = False
        self.clock: Callable[[], int] = lambda: 0
        self.count = 0

    def subscribe(self, fn: Callable[[Event], None], kinds=None) -> Callable[[], None]:
        """Call ``fn(event)`` for each event (of ``kinds`` if given); returns
        a function that unsubscribes."""
        entry = (fn, frozenset(kinds) if kinds else None)
        self._subs.append(entry)
        self.active = True

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
            self.active = bool(self._subs)
        return unsubscribe

    def emit(self, kind: str, va: int | None = None, step: int | None = None,
             vcpu: int = 0, **data) -> None:
        if not self.active:
            return
        ev = Event(kind, self.clock(), vcpu, va, step, data)
        self.count += 1
        for fn, kinds in list(self._subs):
            if kinds is None or kind in kinds:
                fn(ev)


class JsonlWriter:
    """A subscriber writing one JSON object per event to a file."""

    def __init__(self, fh, vm: str | None = None):
        self.fh = fh
        self.vm = vm            # several VMs writing one file: each event names its VM

    def __call__(self, ev: Event) -> None:
        data = ev.to_json()
        if self.vm is not None:
            data["vm"] = self.vm
        self.fh.write(json.dumps(data, sort_keys=True) + "\n")
