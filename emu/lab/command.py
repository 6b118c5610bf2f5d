"""The ``emu lab`` command: list, new, check.

    emu lab list
    emu lab new LEVEL [DIR]
    emu lab check FILE [--level N] [--json | --gradescope [OUT]]

``check`` exits 0 when every test of the levels checked passes, 1 when one
fails (each failure one line: the test, the step, the evidence), 2 on bad
usage.  ``FILE`` may be ``builtin``: the built-in VMM.
"""

from __future__ import annotations

import json
import os
import sys

from ..errors import EmuError
from .levels import LEVELS

FILE_NAME = "vmm.py"
HANDOUT = "HANDOUT.md"


def add_parser(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help="write the shadow-paging VMM yourself, level by "
                              "level (list, new, check)")
    sub = p.add_subparsers(dest="lab_command", metavar="{list,new,check}")
    sub.required = True
    sub.add_parser("list", help="the levels, in order")
    n = sub.add_parser("new", help="a skeleton VMM and the level's handout")
    n.add_argument("level", type=_level_number, help=f"1 to {len(LEVELS)}")
    n.add_argument("dir", nargs="?", default=".", help="where to write them (default: .)")
    c = sub.add_parser("check", help="run the levels' guests under your VMM; a score per "
                       "level, and for each failure the step and the evidence")
    c.add_argument("file", nargs="?", help="your VMM: a Python file with one ShadowVmm "
                   "subclass ('builtin': the built-in VMM)")
    c.add_argument("--many", metavar="SUBMISSIONS", help="grade every submission in a folder "
                   "(NAME.py, or NAME/vmm.py) on worker processes or a Dask cluster; "
                   "one table")
    c.add_argument("--jobs", type=int, default=None, help="--many: local worker processes "
                   "(default: one per core)")
    c.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="--many: grade on a dask.distributed cluster")
    c.add_argument("--out", metavar="FILE", help="--many: write the table (.csv or .json)")
    c.add_argument("--level", type=_level_number, default=None,
                   help="check levels 1 to N (default: every level)")
    c.add_argument("--only", action="store_true", help="check level N alone")
    out = c.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the results as JSON")
    out.add_argument("--gradescope", nargs="?", const="results.json", metavar="OUT",
                     help="write Gradescope's results.json (default: %(const)s)")


def _level_number(text: str) -> int:
    from ..cli import UsageError
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"a level is a number from 1 to {len(LEVELS)}, not '{text[:20]}'") \
            from None
    if not 1 <= n <= len(LEVELS):
        raise UsageError(f"no level {n}: the levels are 1 to {len(LEVELS)} (emu lab list)")
    return n


def main(args) -> int:
    return {"list": cmd_list, "new": cmd_new, "check": cmd_check}[args.lab_command](args)


def cmd_list(args) -> int:
    for lv in LEVELS:
        guests = ", ".join(t.name for t in lv.tests)
        print(f"{lv.number}  {lv.title}")
        print(f"   you write: {lv.writes}")
        print(f"   guests:    {guests}  (--shadow-policy {lv.policy})")
    print("\n'emu lab new LEVEL DIR' writes a skeleton and a handout; "
          "'emu lab check FILE --level N' grades it.")
    return 0


def cmd_new(args) -> int:
    from .skeleton import handout, skeleton
    os.makedirs(args.dir, exist_ok=True)
    vmm = os.path.join(args.dir, FILE_NAME)
    doc = os.path.join(args.dir, HANDOUT)
    for path in (vmm, doc):
        if os.path.exists(path):
            raise EmuError(f"{path} exists: not overwritten (choose another DIR)")
    shown = os.path.relpath(vmm)
    _write_new(vmm, skeleton(args.level, shown))
    _write_new(doc, handout(args.level, shown))
    print(f"wrote {shown} (your VMM) and {os.path.relpath(doc)} (level {args.level})")
    print(f"next: emu lab check {shown} --level {args.level}")
    return 0


def _write_new(path: str, text: str) -> None:
    with open(path, "x", encoding="utf-8") as f:       # never over a student's file
        f.write(text)


def cmd_check(args) -> int:
    from ..cli import UsageError
    from .checker import check
    from .loader import BUILTIN, load_vmm
    top = args.level or len(LEVELS)
    levels = [top] if args.only else list(range(1, top + 1))
    if (args.file is None) == (args.many is None):
        raise UsageError("give one VMM file, or --many SUBMISSIONS")
    if args.many is not None:
        return check_many(args, levels)
    if args.jobs is not None or args.scheduler or args.out:
        raise UsageError("--jobs, --scheduler and --out go with --many")
    from .many import changed_code, emu_code
    before = emu_code()
    cls = load_vmm(args.file)
    path = None if args.file == BUILTIN else args.file
    quiet = args.json or args.gradescope
    results = check(cls, levels, path, progress=None if quiet else _progress)
    changed = changed_code(before, emu_code())
    if changed:                 # it graded itself: no score (as --many)
        why = f"your VMM changed emu's own code ({changed}): not graded"
        if args.gradescope:
            from ..outputs import write_json_atomic
            write_json_atomic(args.gradescope,
                              {**gradescope(results), "score": 0, "output": why, "tests": []})
        raise EmuError(why)
    if args.json:
        json.dump(to_json(args.file, results), sys.stdout, indent=2)
        print()
    elif args.gradescope:
        from ..outputs import write_json_atomic
        write_json_atomic(args.gradescope, gradescope(results))
        print(f"wrote {args.gradescope}: {score_line(results)}")
    else:
        print(report(args.file, cls, results))
    return 0 if all(lr.ok for lr in results) else 1


def check_many(args, levels: list[int]) -> int:
    from ..cli import UsageError
    from ..sweep.cli import require
    require("emu lab check --many")         # (it grades through the sweep's engines)
    from ..sweep.engine import DaskCluster, LocalProcesses, scheduler_address
    from .many import grade_many, submissions, table, write
    if args.json or args.gradescope:
        raise UsageError("--many writes one table: use --out FILE.csv or FILE.json")
    if args.scheduler and args.jobs is not None:
        raise UsageError("--scheduler grades on the cluster's workers: no --jobs with it")
    submissions(args.many)                  # a bad folder is one line before any work
    if args.out and not args.out.endswith((".csv", ".json")):
        raise UsageError(f"{args.out}: --out writes .csv or .json")   # (before any grading)
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if not 1 <= jobs <= 1024:
        raise UsageError(f"--jobs must be between 1 and 1024, not {jobs}")
    engine = DaskCluster(scheduler_address(args.scheduler)) if args.scheduler else \
        LocalProcesses(jobs)
    rows = grade_many(args.many, levels, engine)
    print(table(rows, args.many))
    if args.out:
        write(rows, args.out)
        print(f"wrote {args.out}")
    return 0


def _progress(level, test) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[Klevel {level.number}: {test.name} ...", end="", file=sys.stderr,
              flush=True)


def report(file: str, cls, results) -> str:
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    lines = [f"emu lab check {file}: {cls.__name__} ({cls.name})"]
    for lr in results:
        mark = "passed" if lr.ok else "FAILED"
        lines.append(f"level {lr.level.number}  {lr.level.title:<34} "
                     f"{lr.passed}/{len(lr.tests)}  {mark}")
        for t in lr.tests:
            if not t.passed:
                lines.append(f"  {t.test}: {t.finding}")
    lines.append(score_line(results))
    return "\n".join(lines)


def score_line(results) -> str:
    tests = sum(len(lr.tests) for lr in results)
    passed = sum(lr.passed for lr in results)
    levels = sum(lr.ok for lr in results)
    return f"score: {passed}/{tests} tests; {levels} of {len(results)} levels passed"


def to_json(file: str, results) -> dict:
    return {"vmm": file,
            "score": sum(lr.passed for lr in results),
            "max_score": sum(len(lr.tests) for lr in results),
            "levels": [{"level": lr.level.number, "title": lr.level.title,
                        "score": lr.passed, "max_score": len(lr.tests), "passed": lr.ok,
                        "tests": [t.to_json() for t in lr.tests]} for lr in results]}


def gradescope(results) -> dict:
    """Gradescope's autograder results format: a score, and one entry per
    test with its own score, name and output."""
    tests = []
    for lr in results:
        for t in lr.tests:
            tests.append({"name": f"level {lr.level.number} ({lr.level.title}): {t.test}",
                          "score": 1 if t.passed else 0, "max_score": 1,
                          "output": "passed" if t.passed else str(t.finding),
                          "visibility": "visible"})
    return {"score": sum(t["score"] for t in tests),
            "max_score": len(tests),
            "output": score_line(results),
            "visibility": "visible",
            "tests": tests}
