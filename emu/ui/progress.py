"""A live progress line for long runs: instructions, simulated time, faults.

``ProgressLine`` is a ``System.progress`` hook (called after every batch).
Once a run has lasted ``delay`` host seconds it keeps one line on a
terminal up to date (a carriage return, no newline) at most every
``interval`` seconds; ``clear()`` erases it before anything else is
written and at the end.  The caller only installs it when the output is a
terminal: nothing of it ever reaches a pipe or a file.
"""

from __future__ import annotations

import time

ERASE = "\r\x1b[K"


def faults_so_far(system) -> int:
    """#PF exits the VMM handled (every kind), or natively #PF delivered."""
    vmm = system.vmm
    if vmm is not None:
        return sum(getattr(vmm, "faults", {}).values())
    return system.cpu.exceptions.get(14, 0)


class ProgressLine:
    """Keeps ``stream`` (a terminal) showing how far a run has got."""

    def __init__(self, stream, delay: float = 0.5, interval: float = 0.1,
                 clock=time.perf_counter, label: str = ""):
        """``label``: what runs (``emu compare`` names each configuration)."""
        self.stream = stream
        self.clock = clock
        self.start = clock()
        self.next = self.start + delay
        self.interval = interval
        self.label = label
        self.shown = False

    def __call__(self, system) -> None:
        now = self.clock()
        if now < self.next:
            return
        self.show(system, now)

    def show(self, system, now: float | None = None) -> None:
        """Draw the line now."""
        now = self.clock() if now is None else now
        self.next = now + self.interval
        what = "page faults" if system.vmm is None else "faults"
        label = f"  {self.label} ·" if self.label else ""
        line = (f"{label}  {system.cpu.icount:,} instructions · {int(system.env.now):,} "
                f"cycles · {faults_so_far(system):,} {what} · {now - self.start:.1f} s")
        self.stream.write(ERASE + line)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write(ERASE)
            self.stream.flush()
            self.shown = False
