"""The ``emu quiz`` subcommand (a plugin of ``emu.cli``).

    emu quiz [--kind K] [--seed S] [--count N] [--difficulty 1-3] [--solve]
             [--format text|markdown|json]
    emu quiz --check ANSWERS.json [--format text|json]
    emu quiz --kind K --seed S --open N [--mode M] [--script FILE]
    emu quiz --kind K --seed S --source N

Exit status: 0; with --check, 0 when every answer is right and 5 when
some are not; bad usage 2 and bad input (a missing or malformed file) 1,
each with one line on standard error.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..asm.lexer import clip
from ..errors import EmuError
from . import DIFFICULTIES, KINDS, MAX_COUNT, MAX_SEED, kind_of, make, problems, work

EXIT_WRONG = 5        # --check: some answers are wrong (as 'emu compare' for a difference)
FORMATS = ("text", "markdown", "json")


def _bounded(name: str, lo: int, hi: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{clip(text)}' is not a number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be between {lo} and {what}, "
                                             f"not {clip(text)}")
        return value
    return parse


def add_parser(subparsers, name: str) -> None:
    from ..system import MODES
    q = subparsers.add_parser(name, help="seeded exercises whose answers the emulator "
                              "computes (translate, six steps, nested walk, TLB, A/D, cost)")
    q.add_argument("--kind", choices=(*KINDS, "all"), default="all",
                   help="the kind of problem (default: all, every kind in turn)")
    q.add_argument("--seed", type=_bounded("--seed", 0, MAX_SEED, "2**63 - 1"), default=0,
                   help="which problems (default: %(default)s)")
    q.add_argument("--count", type=_bounded("--count", 1, MAX_COUNT, str(MAX_COUNT)),
                   default=None, help="how many problems (default: 1 of a kind; one of "
                   "each kind for 'all')")
    q.add_argument("--difficulty", type=_bounded("--difficulty", 1, 3, "3"), default=1,
                   help="1 (small), 2 or 3 (default: %(default)s)")
    q.add_argument("--solve", action="store_true", help="print the answers and why")
    q.add_argument("--format", choices=FORMATS, default="text",
                   help="text, markdown (a handout) or json (an autograder; what --check "
                        "reads) (default: %(default)s)")
    q.add_argument("--check", metavar="ANSWERS.json",
                   help="grade the answers in ANSWERS.json (the quiz's JSON, answers filled in)")
    q.add_argument("--open", type=_bounded("--open", 1, 1000, "1000"), metavar="N",
                   help="run problem N in the stepper, stopped where its answer happens")
    q.add_argument("--source", type=_bounded("--source", 1, 1000, "1000"), metavar="N",
                   help="print problem N's guest program (for emu run / emu step)")
    q.add_argument("--mode", choices=MODES, default=None,
                   help="with --open: the mode to run in (default: the problem's own)")
    q.add_argument("--script", metavar="FILE",
                   help="with --open: run the stepper commands in FILE, then exit")
    q.add_argument("--width", type=_bounded("--width", 40, 1000, "1000"), default=None,
                   help="with --open: console width when not on a terminal (default: 100)")


def main(args) -> int:
    from ..cli import UsageError
    actions = [o for o, v in (("--check", args.check), ("--open", args.open),
                              ("--source", args.source)) if v is not None]
    if len(actions) > 1:
        raise UsageError(f"{actions[0]} and {actions[1]} do not go together")
    if args.check is not None:
        for opt, bad in (("--solve", args.solve), ("--count", args.count is not None),
                         ("--format markdown", args.format == "markdown")):
            if bad:
                raise UsageError(f"--check takes no {opt} (the file says what it is)")
        return _check(args)
    if args.open is None and (args.mode or args.script or args.width):
        raise UsageError("--mode, --script and --width go with --open")
    if args.open is not None:
        return _open(args)
    if args.source is not None:
        sys.stdout.write(work(make(kind_of(args.kind, args.source), args.seed, args.source,
                                   args.difficulty)).program)
        return 0
    count = args.count or (1 if args.kind != "all" else len(KINDS))
    plist = problems(args.kind, args.seed, count, args.difficulty)
    from . import render
    if args.format == "json":
        data = render.as_json(args.kind, args.seed, args.difficulty, plist, args.solve)
        sys.stdout.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
    elif args.format == "markdown":
        sys.stdout.write(render.markdown(args.kind, args.seed, args.difficulty, plist,
                                         args.solve))
    else:
        sys.stdout.write(render.text(args.kind, args.seed, args.difficulty, plist, args.solve))
    return 0


def _check(args) -> int:
    from . import grade
    data = grade.read(args.check)
    head, graded = grade.check(data, args.check)
    if args.format == "json":
        sys.stdout.write(json.dumps(grade.report_json(head, graded), indent=1,
                                    sort_keys=True) + "\n")
    else:
        sys.stdout.write(grade.report_text(head, graded))
    return 0 if all(not g.wrong for g in graded) else EXIT_WRONG


def _open(args, stdin=None, stdout=None) -> int:
    from rich.console import Console

    from ..ui.stepper import HEIGHT, WIDTH, Stepper, read_script, script_lines
    from .machine import config, image_of, open_session
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    problem = make(kind_of(args.kind, args.open), args.seed, args.open, args.difficulty)
    w = work(problem)
    at = w.open_at
    lines = read_script(args.script) if args.script is not None else None
    interactive = lines is None and stdin.isatty() and stdout.isatty()
    if lines is None and not interactive:
        try:
            lines = script_lines(stdin, "<stdin>")
        except UnicodeDecodeError:
            raise EmuError("cannot read commands from standard input: not UTF-8 text") from None
    mode = args.mode or at.mode
    name = f"quiz-{problem.kind}-s{problem.seed}-d{problem.difficulty}-{problem.number}.s"
    image = image_of(w.program, name)
    session, message = open_session(image, config(mode, **dict(at.config)), at.labels,
                                    at.events if mode == at.mode else ())
    if interactive:
        console = Console(file=stdout, highlight=False)
    else:
        console = Console(file=stdout, width=args.width or WIDTH, height=HEIGHT,
                          color_system=None, force_terminal=False, force_interactive=False,
                          highlight=False, emoji=False)
    stepper = Stepper(session, console, interactive=interactive,
                      height=None if interactive else HEIGHT)
    stepper.message = f"{problem.name}: {at.message} ({message})"
    if interactive:
        stepper.interact()
    else:
        stepper.run_lines(lines)
    return 0


__all__ = ["DIFFICULTIES", "EXIT_WRONG", "add_parser", "main"]
