"""One run of a sweep: the function a worker executes, and its key.

``run_cell`` is an ordinary ``System(image, config).run()``; whatever
happens, it returns a *record* (a JSON-able dict): the run's ``Result``
(outcome ``poweroff``, ``crash`` or ``budget``), or outcome ``timeout`` (the
host-time limit: the counters up to there) or ``error`` (the run could not
be built, or the emulator raised; the message says what).

The key is a content address: a hash of everything that decides what the
run does -- the image's bytes and entry, every ``Config`` field (the cost
model included) and the emulator's version, which is the package version
plus a hash of the source of every module a run executes.  The same key
gives the same record, so a record can be stored and reused
(``cache.py``), on this machine or from any worker.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..asm import Image
from ..errors import EmuError
from ..system import Config, System
from ..vmm.handler_time import STOPPED

KEY_FORMAT = 1          # bump when the record's layout changes

# Modules that shape no run: the front ends.  Editing them keeps the cache.
_FRONT_ENDS = ("ui/", "sweep/", "devtools/", "quiz/", "gdb/", "timetravel/", "cli.py",
               "__main__.py")
_RUN_MODULES = ("sweep/cell.py",)       # ... except this one, which runs it

_version: str | None = None


def emulator_version() -> str:
    """``0.1.0+src.<hash>``: the package version and a hash of the source
    of every module that takes part in a run, so that a changed emulator
    never reuses an old result."""
    global _version
    if _version is None:
        # The package that runs, as imported (not through symlinks).
        import emu
        root = Path(emu.__file__).absolute().parent
        digest = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(_FRONT_ENDS) and rel not in _RUN_MODULES:
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        _version = f"{_package_version()}+src.{digest.hexdigest()[:16]}"
    return _version


def _package_version() -> str:
    from emu import __version__
    return __version__


def image_digest(image: Image) -> dict:
    """What of an image a run reads: its bytes where they load, its entry."""
    return {"entry": image.entry,
            "segments": [[addr, hashlib.sha256(data).hexdigest()]
                         for addr, data in image.segments]}


def digest(data) -> str:
    """sha256 of a JSON value, written canonically."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(image: Image, config: Config, emu: str | None = None) -> str:
    key = {"format": KEY_FORMAT, "kind": "run", "emu": emu or emulator_version(),
           "image": image_digest(image), "config": asdict(config)}
    if config.vmm is not None:          # a student's VMM: its text, not only its name
        try:
            with open(config.vmm, "rb") as f:
                key["vmm"] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            key["vmm"] = None
    return digest(key)


@dataclass(frozen=True)
class RunCell:
    """What a worker needs for one run."""

    image: Image
    config: Config
    timeout: float          # host seconds (the cycle budget is config.max_cycles)
    emu: str                # the driver's emulator_version(): a worker must match it


class HostTimeout(Exception):
    """The run went past its host-time limit."""


CHILD_GRACE = 60.0      # host seconds a child process may take beyond the run's limit


def run_cell(cell: RunCell, here: bool = False) -> dict:
    """Run one cell; never raises for anything the run does.  A run of a
    student's VMM (``config.vmm``) goes to a child process of its own
    (``_in_child``; ``here``: this is it): the alarm that bounds each of its
    handlers needs a main thread (a Dask worker runs tasks on threads), and
    a handler stuck in one call into C needs a process that watches from
    outside (``vmm/handler_time.py``)."""
    if cell.config.vmm is not None and not here:
        return _in_child(cell)
    if cell.emu != emulator_version():
        return {"outcome": "error", "exit_status": None, "transient": True,
                "message": f"this worker runs another emulator ({emulator_version()}, "
                           f"the sweep's is {cell.emu}): install the same emu everywhere"}
    t0 = time.perf_counter()
    try:
        system = System(cell.image, cell.config)
        system.progress = _deadline(t0 + cell.timeout)
        try:
            record = system.run().to_json()
        except HostTimeout:
            record = system.result().to_json()      # the counters so far
            record.update(
                outcome="timeout", host_seconds=round(time.perf_counter() - t0, 6),
                transient=True,                     # another machine may finish it
                message=f"host-time limit of {cell.timeout:g} s reached after "
                        f"{record['cycles']:,} cycles")
    except (Exception, SystemExit) as e:   # a bad image, a student's VMM, or a bug in emu
        student = _student_message(e) if cell.config.vmm is not None else None
        what = "" if isinstance(e, EmuError) else "internal error: "
        record = {"outcome": "error", "exit_status": None,
                  "message": student or f"{what}{type(e).__name__}: {e}",
                  "host_seconds": round(time.perf_counter() - t0, 6)}
    # Through JSON, so that a record read back from the cache is the same
    # value (dict keys become strings).
    return json.loads(json.dumps(record))


def _deadline(when: float):
    """A ``System.progress`` hook (called after every batch of at most a
    million cycles) that stops the run past ``when`` (host clock)."""
    def check(_system) -> None:
        if time.perf_counter() > when:
            raise HostTimeout
    return check


def _student_message(exc: BaseException) -> str | None:
    from ..lab.loader import student_message
    return student_message(exc)


def _in_child(cell: RunCell) -> dict:
    """``run_cell(cell)`` in a child process (``python -m emu.sweep.cell``):
    the cell in on standard input, the record out on standard output."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", __name__], input=pickle.dumps(cell),
                              capture_output=True, timeout=cell.timeout + CHILD_GRACE)
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "exit_status": None, "transient": True,
                "host_seconds": round(time.perf_counter() - t0, 6),
                "message": f"host-time limit of {cell.timeout:g} s reached (the child "
                           "process running it was killed)"}
    try:
        return json.loads(done.stdout)
    except ValueError:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        if done.returncode == 1 and last[0].startswith(STOPPED):
            # the watcher stopped a handler stuck in C: the student's, every time
            return {"outcome": "error", "exit_status": None,
                    "host_seconds": round(time.perf_counter() - t0, 6),
                    "message": last[0].removeprefix("emu: error: ")}
        return {"outcome": "error", "exit_status": None, "transient": True,
                "host_seconds": round(time.perf_counter() - t0, 6),
                "message": f"the child process running it died (status "
                           f"{done.returncode}){': ' + last[0] if last[0] else ''}"}


def _child() -> None:
    from ..vmm import handler_time
    cell = pickle.loads(sys.stdin.buffer.read())
    handler_time.supervise()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr             # what the guest's VMM prints is not the record
    out.write(json.dumps(run_cell(cell, here=True)).encode())
    out.flush()


if __name__ == "__main__":
    _child()
