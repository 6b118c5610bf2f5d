"""Output files of the command line: checked before a run, ``-`` for stdout.

Every export option (``--stats-json``, ``--trace``, ``--stories``,
``--timeline``, ``--json``, ``--svg``, ``--html``, ``--svg-each``) names a
file; ``-`` is standard output.  ``check_output`` is called for each before
the guest starts, so a path that cannot be written costs no run.  JSON
files are written whole or not at all (a temporary file renamed over the
target) with the permissions the umask gives a new file, or the target's own
when it exists, as other tools do; a device or FIFO is written to, never
replaced.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from .errors import EmuError

STDOUT = "-"


def _fail(path: str, why: str) -> EmuError:
    return EmuError(f"cannot write {path}: {why}")


def check_output(path: str | None) -> None:
    """Raise a one-line ``EmuError`` if ``path`` cannot be written (its
    folder missing, a folder in its place, no permission)."""
    if path is None or path == STDOUT:
        return
    if path == "":
        raise EmuError("an output file name is empty")
    if os.path.isdir(path):
        raise _fail(path, "Is a directory")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise _fail(path, "Permission denied")
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _fail(path, "No such file or directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _fail(path, "Permission denied")


def check_folder(path: str) -> None:
    """A folder that files will be written into: it exists (or its parent
    does, and it will be made) and is writable."""
    if path == STDOUT:
        raise EmuError("a folder is needed here, not '-'")
    if os.path.exists(path) and not os.path.isdir(path):
        raise _fail(path, "Not a directory")
    target = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(target):
        raise _fail(path, "No such file or directory")
    if not os.access(target, os.W_OK | os.X_OK):
        raise _fail(path, "Permission denied")


def make_folder(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None


def new_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class _Stdout:
    """Standard output as an output stream that closing leaves open."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def close(self) -> None:
        sys.stdout.flush()


def open_stream(path: str):
    """A text stream to write as the run goes (``-``: standard output)."""
    if path == STDOUT:
        return _Stdout()
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None


def close_stream(fh, path: str) -> None:
    """Close an output stream; the last buffered write may fail here."""
    try:
        fh.close()
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (``-``: standard output)."""
    if path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None


def write_json_atomic(path: str, data) -> None:
    """Write JSON so that a failure never leaves a half-written file
    (``replace_file``; ``-``: standard output)."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if path == STDOUT:
        write_text(path, text)
        return
    replace_file(path, lambda p: _write_file(p, text))


def replace_file(path: str, write) -> None:
    """``write(p)`` writes the whole file at ``p``: a temporary file beside
    ``path``, renamed over it (never a half-written file; the mode the file
    has, or the one a new file gets) -- or, where ``path`` is a device or a
    FIFO (``/dev/null``), ``path`` itself, written to and never replaced.
    A failure is a one-line ``EmuError``."""
    if os.path.exists(path) and not os.path.isfile(path):
        if os.path.isdir(path):
            raise _fail(path, "Is a directory")
        try:
            write(path)
        except OSError as e:
            raise _fail(path, e.strerror or str(e)) from None
        return
    try:
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else new_file_mode()
    except OSError:
        mode = new_file_mode()
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".emu-")
        os.fchmod(fd, mode)             # (not mkstemp's 0600)
        os.close(fd)
    except OSError as e:
        raise _fail(path, e.strerror or str(e)) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _fail(path, e.strerror or str(e)) from None


def _write_file(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
