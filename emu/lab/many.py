"""``emu lab check --many SUBMISSIONS/``: grade a whole class at once.

Each submission -- a ``.py`` file in the folder, or a ``vmm.py`` in a
sub-folder per student -- is one job for the sweep's engines
(``emu.sweep.engine``): worker processes on this machine by default, a
Dask cluster with ``--scheduler``.  A job grades its submission in a
process of its own (``python -m emu.lab.many``), started in an empty
temporary folder: what one student's code does to emu's modules, to the
process or to the files around it reaches no other submission, and what it
prints is not the grader's output.  A submission whose code changed emu's
own functions or classes gets no score.  What comes back is one row per
submission, written as one table (text, and CSV or JSON with ``--out``).
A submission that cannot be loaded, or whose process dies, is a row with
the reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import subprocess
import sys
from types import FunctionType

from ..errors import EmuError

FIELDS = ("submission", "score", "max_score", "levels_passed", "first_failure")


def submissions(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise EmuError(f"{folder}: not a folder of submissions")
    found = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isfile(os.path.join(path, "vmm.py")):
            found.append(os.path.join(path, "vmm.py"))
        elif entry.endswith(".py"):
            found.append(path)          # (a folder too: its row says it does not load)
    if not found:
        raise EmuError(f"{folder}: no submissions (NAME.py files, or NAME/vmm.py)")
    return found


CHILD_TIMEOUT = 1800.0      # host seconds a child process may take to grade one submission


def grade_here(payload) -> dict:
    """One submission, graded in this process (the child's work)."""
    path, levels = payload
    from .checker import check
    from .loader import load_vmm
    before = emu_code()
    try:
        cls = load_vmm(path)
    except EmuError as e:
        return _failed(path, f"cannot load: {e}")
    results = check(cls, levels, path)
    changed = changed_code(before, emu_code())
    if changed:
        return _failed(path, f"your VMM changed emu's own code ({changed}): not graded")
    first = next((f"level {lr.level.number} {t.test}: {t.finding}"
                  for lr in results for t in lr.tests if not t.passed), "")
    return {"submission": path, "score": sum(lr.passed for lr in results),
            "max_score": sum(len(lr.tests) for lr in results),
            "levels_passed": sum(lr.ok for lr in results), "first_failure": first}


def _failed(path: str, why: str) -> dict:
    return {"submission": path, "score": 0, "max_score": None, "levels_passed": 0,
            "first_failure": why}


def emu_code() -> dict:
    """What emu's modules and classes hold now, by identity: (module, name)
    and (module, class, name) -> object, and a function's code and defaults
    (which can be replaced in place: ``f.__code__ = ...``)."""
    out = {}

    def note(key, value):
        out[key] = value
        if isinstance(value, FunctionType):
            out[key + ("__code__",)] = value.__code__
            out[key + ("__defaults__",)] = value.__defaults__
            out[key + ("__kwdefaults__",)] = value.__kwdefaults__

    for name, module in list(sys.modules.items()):
        if name != "emu" and not name.startswith("emu."):
            continue
        for key, value in list(vars(module).items()):
            note((name, key), value)
            if isinstance(value, type) and value.__module__ == name:
                for attr, member in list(vars(value).items()):
                    note((name, key, attr), member)
    return out


def changed_code(before: dict, after: dict) -> str | None:
    """The first name of ``before`` that ``after`` holds another object for."""
    for key, value in before.items():
        if key in after and after[key] is not value:
            return ".".join(key)
    return None


def grade(payload) -> dict:
    """One submission (a job: runs on a worker): ``grade_here(payload)`` in
    a child process of its own, in an empty temporary folder (see the
    module doc; the handlers' host-time alarm also needs a process's main
    thread, which a Dask worker's job is not on).  The payload goes in on
    standard input, the row comes out on standard output; paths are made
    absolute for it, and said as given."""
    import tempfile
    path, levels = payload
    real = os.path.abspath(path)
    try:
        with tempfile.TemporaryDirectory(prefix="emu-lab-") as cwd:
            done = subprocess.run([sys.executable, "-m", __name__],
                                  input=pickle.dumps((real, levels)), capture_output=True,
                                  timeout=CHILD_TIMEOUT, cwd=cwd, env=_child_env())
    except subprocess.TimeoutExpired:
        return _failed(path, f"grading took more than {CHILD_TIMEOUT:g} s (stopped)")
    try:
        row = json.loads(done.stdout)
    except ValueError:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return _failed(path, f"the process grading it died (status {done.returncode})"
                             f"{': ' + last[0] if last[0] else ''}")
    row["submission"] = path
    if row.get("first_failure"):
        row["first_failure"] = row["first_failure"].replace(real, path)
    return row


def _child_env() -> dict:
    """The child's environment: this one, with emu importable from where
    this process imports it (the child starts in another folder)."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def _child() -> None:
    from ..vmm import handler_time
    payload = pickle.loads(sys.stdin.buffer.read())
    handler_time.supervise()            # a handler stuck in C: a row in seconds
    out = sys.stdout.buffer
    sys.stdout = sys.stderr             # what the student's VMM prints is not the row
    row = grade_here(payload)
    out.write(json.dumps(row).encode())
    out.flush()


def grade_many(folder: str, levels: list[int], engine) -> list[dict]:
    from ..sweep.engine import Job
    paths = submissions(folder)
    jobs = []
    rows: dict[str, dict] = {}
    for p in paths:
        if os.path.isdir(p):
            rows[p] = _failed(p, "cannot load: a folder, not a Python file")
            continue
        with open(p, "rb") as f:
            key = hashlib.sha256(f.read() + repr((p, levels)).encode()).hexdigest()[:24]
        jobs.append(Job(key=f"lab-{key}", fn=grade, payload=(p, levels)))

    def done(job, record):
        if "outcome" in record:     # the engine's: a lost worker, or grading raised
            record = _failed(job.payload[0], f"{record['outcome']}: {record['message']}")
        rows[job.payload[0]] = record
    engine.run(jobs, done)
    return [rows[p] for p in paths]


def table(rows: list[dict], folder: str) -> str:
    width = max(len(os.path.relpath(r["submission"], folder)) for r in rows)
    lines = [f"{'submission':<{width}}  score   levels  first failure"]
    for r in rows:
        name = os.path.relpath(r["submission"], folder)
        score = f"{r['score']}/{r['max_score']}" if r["max_score"] is not None else "-"
        lines.append(f"{name:<{width}}  {score:<7} {r['levels_passed']:>6}  "
                     f"{r['first_failure'] or '(none)'}")
    return "\n".join(lines)


def write(rows: list[dict], out: str) -> None:
    from ..outputs import replace_file, write_json_atomic
    if out.endswith(".json"):
        write_json_atomic(out, rows)
        return
    if not out.endswith(".csv"):
        raise EmuError(f"{out}: --out writes .csv or .json")
    def write_csv(path: str) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    replace_file(out, write_csv)


def dump(rows: list[dict]) -> str:
    return json.dumps(rows, indent=2)


if __name__ == "__main__":
    _child()
