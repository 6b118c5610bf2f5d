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
    return programs_dir() / "include"


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
    raise EmuError(f"{program}: no such file (and no bundled guest program of "
                   f"that name; 'emu list' shows them)")


def catalogue() -> list[tuple[str, str]]:
    """(name, first comment line) of each bundled program."""
    out = []
    for path in sorted(programs_dir().glob("*.s")):
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
