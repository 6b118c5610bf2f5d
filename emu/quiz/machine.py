"""Running a problem's guest program with the stepper's machinery
(``emu.ui.session.Session``): to the question, one instruction at a time,
and reading the trace events each motion showed.  The solvers and
``emu quiz --open`` drive it the same way, so the answer is what the
stepper shows.
"""

from __future__ import annotations

from ..asm import Image
from ..errors import EmuError
from ..system import Config
from ..ui.session import Session
from .harness import MEM_MIB, assemble_program


def config(mode: str, **changes) -> Config:
    return Config(mode=mode, mem_mib=MEM_MIB, **changes).validate()


def image_of(source: str, name: str) -> Image:
    return assemble_program(source, name)


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


def step_events(s: Session) -> list:
    """Run the instruction at eip (and whatever the VMM does for it);
    returns the trace events that happened meanwhile."""
    first = s.nevents
    s.step(1)
    return [s.event(i)[0] for i in range(first, s.nevents)]


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
