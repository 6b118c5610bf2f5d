"""Finding guest programs: a path, or the name of a bundled one.

The bundled guest programs live in the repository's ``guest_programs/``
folder, installed as the package ``emu.guest_programs``; their shared
header is in its ``include/`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EmuError

_HERE = Path(__file__).resolve().parent


def programs_dir() -> Path:
    """The folder of the bundled guest programs."""
    try:
        import emu.guest_programs as gp  # installed (package-dir mapping)
        paths = list(getattr(gp, "__path__", []))
        if paths:
            return Path(paths[0])
    except ImportError:
        pass
    return _HERE.parent / "guest_programs"   # a source checkout


def include_dir() -> Path:
    """The bundled programs' shared headers (``kernel.inc``, ``lib.inc``)."""
    return programs_dir() / "include"


def assemble_file(path, include_dirs=(), **options):
    """``emu.asm.assemble_file`` with the bundled headers on the include
    path after ``include_dirs``, so that ``assemble_file(find_program(
    "demand"))`` works as it stands."""
    from .asm import assemble_file as assemble
    dirs = [*include_dirs]
    if include_dir() not in [Path(d) for d in dirs]:
        dirs.append(include_dir())
    return assemble(path, dirs, **options)


def resolve(program: str) -> str:
    """``program`` as a path if it exists, else a bundled program by name."""
    if os.path.exists(program):
        if os.path.isdir(program):
            raise EmuError(f"{program} is a directory, not a program")
        return program
    name = program[:-2] if program.endswith(".s") else program
    candidate = programs_dir() / f"{name}.s"
    if os.sep not in program and candidate.exists():
        return str(candidate)
    lab = Path(__file__).parent / "lab" / "guests" / f"{name}.s"
    if os.sep not in program and lab.exists():
        return str(lab)             # the lab's guests (emu lab) by name too
    raise EmuError(f"{program}: no such file (and no bundled guest program of "
                   f"that name; 'emu list' shows them)")


def catalogue() -> list[tuple[str, str]]:
    """(name, first comment line) of each bundled program."""
    return _titles(programs_dir())


def lab_catalogue() -> list[tuple[str, str]]:
    """(name, first comment line) of each of the lab's guests (``emu lab``),
    which run by name too."""
    return _titles(Path(__file__).parent / "lab" / "guests")


def _titles(folder: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted(folder.glob("*.s")):
        title = ""
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line.startswith(";"):
                    title = line.lstrip("; ").strip()
                    break
        out.append((path.stem, title))
    return out


def expected_output(name: str) -> Path:
    return programs_dir() / "expected" / f"{name}.txt"


OPTIONS_PREFIX = "; emu-options:"


def default_options(path: str) -> list[str]:
    """Options a program asks for in a ``; emu-options: ...`` comment line
    (e.g. a small ``--max-cycles`` for a guest that loops forever).  The
    command line's own options come after them, so they win."""
    out: list[str] = []
    if not os.path.isfile(path):        # a device or a FIFO may never end
        return out
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for _ in range(40):
                line = fh.readline(4096)
                if line.startswith(OPTIONS_PREFIX):
                    out += line[len(OPTIONS_PREFIX):].split()
    except OSError:
        pass
    return out


def expected_outcome(name: str) -> tuple[str, int | None]:
    """(outcome, exit status) a bundled program must end with: from
    ``expected/NAME.outcome`` ("crash", "budget" or "poweroff STATUS"), or a
    power-off with any status when there is no such file."""
    path = programs_dir() / "expected" / f"{name}.outcome"
    if not path.exists():
        return "poweroff", None
    words = path.read_text().split()
    return words[0], int(words[1]) if len(words) > 1 else None
