"""Running a problem's guest program to its question.

The solvers use ``Runner``: a ``System`` driven as the stepper's session
drives one (held between batches, one instruction at a time, the VMM's
work done in between), but at full speed up to a marker.  ``--open`` and
the cross-checks use the stepper's own session (``emu.ui.session``) with
address breakpoints.  Both run the same program on the same System, which
gives the same run however its batches are cut.
"""

from __future__ import annotations

from simpy.core import EmptySchedule

from ..asm import Image
from ..errors import EmuError
from ..system import Config, System
from ..ui.session import Session
from .harness import MEM_MIB, assemble_program


def config(mode: str, **changes) -> Config:
    return Config(mode=mode, mem_mib=MEM_MIB, **changes).validate()


def image_of(source: str, name: str) -> Image:
    return assemble_program(source, name)


class Runner:
    """A ``System`` driven the way the stepper's session drives it, but at
    full speed up to a marker (``harness.Mark``, an I/O instruction that
    ends the CPU's batch): the vCPU is held there (``System.max_batch_insns``
    = 0, set from the ``System.progress`` hook), then runs one instruction
    at a time.  Every trace event is kept in ``events``."""

    def __init__(self, image: Image, cfg: Config):
        self.image = image
        self.system = System(image, cfg)
        self.events: list = []
        self.system.bus.subscribe(self.events.append)
        self._hold_at: set = set()
        self.system.progress = self._progress
        self.system.start()

    def _progress(self, system) -> None:
        if system.cpu.eip in self._hold_at:
            system.max_batch_insns = 0

    def _step(self, limit) -> None:
        self.system.max_batch_insns = limit
        try:
            self.system.env.step()
        except EmptySchedule:
            raise EmuError("the quiz program stopped early: a bug in emu quiz") from None

    def run_to(self, mark: str, label: str) -> None:
        """Full speed to the marker at ``mark``, held after it; then an
        instruction at a time to ``label``."""
        s, sym = self.system, self.image.symbols
        self._hold_at = {sym[mark], sym[mark + ".nop"]}
        s.max_batch_insns = None
        while not (s.held and s.cpu.eip in self._hold_at):
            if s.finished:
                raise EmuError(f"the quiz program never reached {mark}: a bug in emu quiz")
            # Held elsewhere (a batch cut at the marker itself): go on at full speed.
            self._step(None if s.held or s.max_batch_insns != 0 else 0)
        self._hold_at = set()
        self.step_to(label)

    def step(self) -> list:
        """Run the instruction at eip and what the VMM does for it (as the
        stepper's ``step``); returns the trace events meanwhile."""
        s = self.system
        first = len(self.events)
        target = s.cpu.icount + 1
        while not s.finished and (s.cpu.icount < target or not s.held):
            self._step(1 if s.held and s.cpu.icount < target else 0)
        return self.events[first:]

    def step_to(self, label: str) -> list:
        """Instruction by instruction to ``label``; the events meanwhile."""
        s, addr = self.system, self.image.symbols[label]
        first = len(self.events)
        while not (s.held and s.cpu.eip == addr):
            if s.finished:
                raise EmuError(f"the quiz program never reached {label}: a bug in emu quiz")
            self.step()
        return self.events[first:]


def session_at(image: Image, cfg: Config, label: str) -> Session:
    """A session stopped before the instruction at ``label`` runs."""
    s = Session(image, cfg)
    go_to(s, label)
    return s


def go_to(s: Session, label: str) -> None:
    """Run ``s`` to the instruction at ``label`` (the next time it is reached)."""
    addr = s.image.symbols[label]
    s.add_breakpoint("addr", addr, label)
    why = s.cont()
    s.delete_breakpoint(None)
    if s.finished or s.system.cpu.eip != addr:
        raise EmuError(f"the quiz program never reached {label} ({why}): a bug in emu quiz")


def open_session(image: Image, cfg: Config, labels, events=()) -> tuple[Session, str]:
    """The session ``--open`` hands to the stepper: address breakpoints at
    every label, run to the first, then ``micro`` until one of ``events``
    is shown.  Returns it and the stepper's first message."""
    s = Session(image, cfg)
    for label in labels:
        s.add_breakpoint("addr", s.image.symbols[label], label)
    message = s.cont()
    if events:
        for _ in range(64):
            if s.finished:
                break
            message = s.micro()
            ev = s.event(s.shown - 1)
            if ev is not None and ev[0].kind in events:
                break
    return s, message
