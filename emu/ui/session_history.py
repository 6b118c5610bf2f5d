"""Positions in a ``Session``'s run and going back to them (a mixin).

``Pos`` (a place in the run) and ``Mark`` (a place with the screen it had,
what ``back`` returns to), ``split_log`` (the log of batch limits cut at a
snapshot), and ``HistoryMixin``: the session's motions backwards
(``reverse-step``, ``reverse-continue``, ``reverse-micro``, whose searches
are in ``reverse.py``), ``last-write``, and ``rebase`` (a debugger changed
the machine: no going back before here).  ``session.py`` holds the rest of
the session.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .story import describe


@dataclass(frozen=True)
class Pos:
    """A place in the run (see the module doc of ``session.py``)."""

    nsteps: int        # simpy events processed
    shown: int         # trace events shown
    icount: int        # instructions retired there (checks a replay)


@dataclass(frozen=True)
class Mark:
    """A position with the screen it had: what ``back`` returns to."""

    pos: Pos
    shown_before: int
    regs_before: dict
    message: str
    command: str       # the motion that started here


class HistoryMixin:
    """Going backwards in a ``Session`` (see ``session.py`` for its state)."""

    # --- going backwards (searches in ``reverse.py``) ------------------------------------------
    def _reverse(self, command: str, look, nothing: str, coarse: bool = False) -> str:
        """Go back to the place ``look`` names last (``reverse.search``), or
        to the start of the history when there is none (``look`` None: go
        there without looking)."""
        from .reverse import SearchInterrupted, goto_place, search
        self.interrupted = False
        regs = self.registers()
        try:
            place = search(self, look, coarse=coarse) if look is not None else None
        except SearchInterrupted:
            self.interrupted = False
            cpu = self.system.cpu
            self.message = (f"{command}: interrupted (still where it began); at "
                            f"{cpu.icount:,} instructions, eip {cpu.eip:#010x}")
            return self.message
        before = [tuple(e) for e in self.log]
        if place is None:
            self._to_origin()
            why = nothing
        else:
            goto_place(self, place)
            why = place.why
        # Going there rewrote the log after a snapshot (in batches of one
        # instruction): a place reached before is still the same number of
        # steps in only if the log up to it is the same -- or it is this
        # place (the same instructions retired, the same events shown).
        here = (self.shown, self.system.cpu.icount)
        same = min(shared_steps(before, self.log), self.nsteps)
        kept = []
        for m in self.history:
            if m.pos.nsteps <= same:
                kept.append(m)
            elif (m.pos.shown, m.pos.icount) == here:
                kept.append(replace(m, pos=Pos(self.nsteps, *here)))
        self.history = kept
        self.regs_before, self.shown_before = regs, self.shown
        cpu = self.system.cpu
        self.message = f"{command}: {why}; at {cpu.icount:,} instructions, eip {cpu.eip:#010x}"
        return self.message

    def _to_origin(self) -> None:
        if self.origin == 0:
            self.log = []
            self._boot()
            self._step(0)
            self.shown = self.nevents
        else:
            snap = self.recorder.store.items[0]
            self._goto(Pos(snap.extra[0], snap.extra[1], snap.icount))

    def reverse_step(self) -> str:
        """Back to the place before the last instruction (or event delivery)."""
        from .reverse import previous_instruction
        return self._reverse("reverse-step", previous_instruction(self),
                             "at the start of the history", coarse=True)

    def reverse_continue(self) -> str:
        """Back to the last place a breakpoint (or, with none set, a fault or
        VM exit) would have stopped a forward run."""
        from .reverse import breakpoint_hits
        return self._reverse("reverse-continue", breakpoint_hits(self),
                             "no breakpoint hit before; at the start of the history")

    def reverse_micro(self) -> str:
        """Back one trace event: inside a fault, to the VMM step before (the
        log replayed from the last snapshot taken before that event)."""
        first = self.recorder.store.items[0].extra[1] if self.origin else 0
        if self.shown <= max(first, 1):
            return self._reverse("reverse-micro", None, "at the start of the history")
        regs = self.registers()
        self._goto_events(self.shown - 1)
        self.history = [m for m in self.history if m.pos.nsteps <= self.nsteps]
        self.regs_before, self.shown_before = regs, self.shown - 1
        ev = self.event(self.shown - 1)[0]
        step = f" (step {ev.step})" if ev.step else ""
        self.message = f"reverse-micro{step}: back to {describe(ev)}"
        return self.message

    def _goto_events(self, n: int) -> None:
        """Show ``n`` trace events, at the end of the simpy event that
        emitted the last of them: restore the last snapshot taken before
        it was emitted, replay the log until it is."""
        log = self.log
        store = self.recorder.store
        snap = store.latest(lambda s: s.extra[1] < n)
        if snap is None:
            self.log = []
            self._boot()
            rest = log
        else:
            self._restore(snap)
            self.log, rest = split_log(log, snap.extra[4], int(snap.extra[3]))
        for limit, count in rest:
            for _ in range(count):
                if self.nevents >= n or not self._step(limit):
                    break
            if self.nevents >= n:
                break
        store.drop_after(lambda s: s.extra[0] <= self.nsteps)
        self.shown = min(n, self.nevents)

    def last_write(self, space: str, addr: int) -> str:
        """Who last changed the dword at ``addr`` (va, pa or ma), and when."""
        from .lastwrite import last_write
        from .reverse import SearchInterrupted
        self.interrupted = False
        try:
            w, ma = last_write(self, space, addr)
        except SearchInterrupted:
            self.interrupted = False
            return f"last-write {space} {addr:#010x}: interrupted"
        where = f"{space} {addr:#010x}" + (f" (ma {ma:#010x})" if space != "ma" else "")
        if w is None:
            return f"last-write {where}: not changed since the start of the history"
        src = self.image.source_at(w.eip)
        line = f" ({src.file.rsplit('/', 1)[-1]}:{src.line}: {src.text.strip()})" if src else ""
        label = self.image.nearest_label(w.eip)
        at = f" <{label[0]}+{label[1]:#x}>" if label else ""
        mode = f"{self.config.mode}, cpl {w.cpl}"
        return (f"last-write {where}: {w.old:#010x} -> {w.new:#010x} by {w.who}, cycle "
                f"{w.cycle:,}, after {w.icount:,} instructions, eip {w.eip:#010x}{at}{line}"
                f" [{mode}]")

    def rebase(self) -> None:
        """A debugger changed the machine (memory or registers): the run
        before this point is not its past any more, so going back stops here."""
        self._settle()
        self.history.clear()
        self.recorder.store.clear()
        self.origin = self.nsteps
        self.snapshot_here()


def shared_steps(a, b) -> int:
    """How many first steps two run-length logs ([limit, count] runs) have
    the same: the batch limit of each step, in order."""
    def steps(log):
        for limit, count in log:
            if count:
                yield limit, count
    shared = 0
    ia, ib = steps(a), steps(b)
    la = next(ia, None)
    lb = next(ib, None)
    while la is not None and lb is not None and la[0] == lb[0]:
        n = min(la[1], lb[1])
        shared += n
        la = (la[0], la[1] - n) if la[1] > n else next(ia, None)
        lb = (lb[0], lb[1] - n) if lb[1] > n else next(ib, None)
    return shared


def split_log(log: list[list], cut: tuple[int, int], more: int = 0):
    """(the first steps of a run-length ``log``, the rest): the steps a
    snapshot's ``cut`` (entries, count in the last) stands for, plus
    ``more``.  The entries before the cut are shared (never changed again)."""
    n, c = cut
    head = log[:max(n - 1, 0)] + ([[log[n - 1][0], c]] if n else [])
    rest = ([[log[n - 1][0], log[n - 1][1] - c]] if n and log[n - 1][1] > c else []) + log[n:]
    for _ in range(more):
        limit, count = rest[0]
        if count > 1:
            rest[0] = [limit, count - 1]
        else:
            rest.pop(0)
        if head and head[-1][0] == limit:
            head[-1] = [limit, head[-1][1] + 1]
        else:
            head.append([limit, 1])
    return head, rest
