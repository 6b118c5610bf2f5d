"""The stop loop of a ``Session`` (a mixin): the simpy events a motion runs.

``StopLoopMixin._advance`` processes simpy events until a motion's stop
(see ``session.py``'s module doc): a trace event it names, a breakpoint, a
watchpoint, an instruction count, an interrupt or the end of the run, with
batches as long as the armed conditions allow and a batch that raised an
event mid-way replayed one instruction at a time.
"""

from __future__ import annotations

import struct

from .breakpoints import event_hit

SEEK_FINE = 4096      # a seek runs this many instructions one at a time ...
SEEK_BATCH = 256      # ... then batches of this many (replaying the one that hits)
RUN_BATCH = 1 << 16   # the longest batch of a motion without a limit (snapshot spacing)


class StopLoopMixin:
    """The stop loop of a ``Session`` (see ``session.py`` for its state)."""

    # --- the stop loop ------------------------------------------------------------
    def _advance(self, *, target: int | None = None, stop=None, seek: bool = False,
                 hold: bool = False, breaks: bool = True) -> str | None:
        """Process simpy events until a stop (see the module doc); returns
        why, or None when ``target`` instructions are reached or the run
        ends.  ``stop(event)`` names an event to stop at; ``seek``: it may
        be raised mid-batch; ``hold``: stop after a VM entry, not after the
        batch that follows it."""
        s, cpu = self.system, self.system.cpu
        addrs = {bp.value: bp for bp in self.breakpoints if bp.kind == "addr"} if breaks else {}
        writes = [bp for bp in self.breakpoints if bp.kind == "write"] if breaks else []
        event_bps = [bp for bp in self.breakpoints
                     if bp.kind in ("fault", "exit")] if breaks else []
        if any(bp.mid_batch for bp in event_bps) or addrs:
            seek = True                     # delivered mid-batch
        fine = bool(addrs or writes or self.watch)
        self.watch.hits.clear()
        if self.watch:
            self.watch.install(s.mmu)
        else:
            self.watch.uninstall()
        watched = {bp.number: self._watch(bp.value) for bp in writes}
        here = (cpu.icount, cpu.eip)
        seek_from = cpu.icount
        refine = False
        while not self.finished:
            if self.interrupted:
                self._settle()
                self.shown = self.nevents
                return "interrupted"
            if target is not None and cpu.icount >= target:
                self._settle()
                self.shown = self.nevents
                return None
            if (hold or (addrs and s.last_stop == "exit")) and not s.held:
                # After an exit, hold before the next batch: the VMM may
                # retire the instruction itself (port I/O, a CR write), and
                # the next one's eip is a place of its own, where an address
                # breakpoint must be seen.
                limit = 0
            elif fine or refine:
                limit = 1
            elif seek:
                limit = 1 if cpu.icount - seek_from < SEEK_FINE else SEEK_BATCH
            else:
                limit = RUN_BATCH
            if target is not None and limit != 0:
                limit = min(limit or target, target - cpu.icount)
            before = self.position()
            n0, i0 = self.nevents, cpu.icount
            if not self._step(limit):
                break
            if self.watch.hits:
                self.watch.install(self.system.mmu)
                self._settle()
                self.shown = self.nevents
                return "watchpoint"
            hit = None
            for i in range(max(n0, self.nevents - len(self.events)), self.nevents):
                ev = self.event(i)[0]
                why = stop(ev) if stop is not None else None
                bp = None
                if why is None:
                    why, bp = event_hit(ev, event_bps, addrs, cpu.eip)
                if why is not None:
                    hit = (i, why, bp)
                    break
            if hit is not None:
                if cpu.icount - i0 > 1:
                    # Raised inside a batch: run that batch again, one
                    # instruction at a time.
                    self._goto(before)
                    s, cpu = self.system, self.system.cpu     # a new System
                    refine = True
                    continue
                if hit[2] is not None:
                    hit[2].hits += 1
                self.shown = hit[0] + 1
                return hit[1]
            now = (cpu.icount, cpu.eip)
            if fine and now != here:
                here = now
                bp = addrs.get(cpu.eip)
                if bp is not None:
                    bp.hits += 1
                    self._settle()
                    self.shown = self.nevents
                    return f"breakpoint {bp.number} {bp.describe()}"
                for bp in writes:
                    old, new = watched[bp.number], self._watch(bp.value)
                    watched[bp.number] = new
                    if old[0] is not None and old[0] == new[0] and old[1] != new[1]:
                        bp.hits += 1
                        self._settle()
                        self.shown = self.nevents
                        return (f"breakpoint {bp.number} {bp.describe()}: "
                                f"{old[1]:#010x} -> {new[1]:#010x}")
        self.shown = self.nevents
        return None

    def _watch(self, va: int):
        """(pa, dword) at ``va`` as the guest maps it now, or (None, None)."""
        from .probe import Probe
        p = Probe(self.system)
        pa = p.va_to_pa(va)
        if pa is None:
            return None, None
        data = p.read_pa(pa, 4)
        return (pa, struct.unpack("<I", data)[0]) if data is not None else (None, None)
