"""The stepper's responsiveness: host time per command after 1,000,000
guest instructions.

    python benchmarks/stepper.py [--mode shadow] [--insns 1000000] [--repeat 5]

The guest is benchmarks/stepper.s: demand paging in a loop, a #PF every
~900 instructions natively (under shadow paging a true, a tracing and a
hidden fault), so ``next`` and ``micro`` have something near to stop at
and ``back`` replays a run full of faults.  Each command is timed as the
console runs it (the motion plus drawing the screen, or the view), the
median of ``--repeat`` tries, each undone with ``back`` so every try
starts from the same place.  ``back`` replays the run from its start: its
time grows with the position, the others do not.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from rich.console import Console  # noqa: E402

from emu.cli import load  # noqa: E402
from emu.system import MODES, Config  # noqa: E402
from emu.ui.session import Session  # noqa: E402
from emu.ui.stepper import Stepper  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=MODES, action="append",
                    help="modes to measure (default: native and shadow)")
    ap.add_argument("--insns", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    image = load(os.path.join(HERE, "stepper.s"))
    for mode in args.mode or ["native", "shadow"]:
        measure(image, mode, args.insns, args.repeat)
    return 0


def measure(image, mode: str, insns: int, repeat: int) -> None:
    t0 = time.perf_counter()
    session = Session(image, Config(mode=mode))
    console = Console(file=io.StringIO(), width=100, height=40, color_system=None)
    stepper = Stepper(session, console, height=40)
    stepper.onecmd(f"step {insns}")
    reach = time.perf_counter() - t0
    print(f"{mode}: reached {session.system.cpu.icount:,} instructions in {reach:.2f} s "
          f"(step {insns:,}: one command)")
    motions = ["step", "step 100", "next", "micro", "continue"]
    session.add_breakpoint("fault", "pf" if mode == "native" else
                           next(iter(session.system.vmm.faults)), "bp")
    rows = []
    for command in motions:
        rows.append((command, _time_motion(stepper, command, repeat)))
    session.breakpoints.clear()
    rows.append(("back (replays the run)", _time_back(stepper, repeat)))
    for view in ("show", "tlb", "pt", "spt", "pmap", "mem va esp 64", "stats", "trace 20"):
        rows.append((view, _time_view(stepper, view, repeat)))
    for command, seconds in rows:
        print(f"  {command:<24} {seconds * 1000:9.1f} ms")


def _time_motion(stepper: Stepper, command: str, repeat: int) -> float:
    """A motion, undone after each try (the undo is not timed)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        stepper.onecmd(command)
        times.append(time.perf_counter() - t0)
        stepper.onecmd("back")
    return statistics.median(times)


def _time_back(stepper: Stepper, repeat: int) -> float:
    """``back`` over one ``step``: a replay from the start to here."""
    times = []
    for _ in range(repeat):
        stepper.onecmd("step")
        t0 = time.perf_counter()
        stepper.onecmd("back")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_view(stepper: Stepper, view: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        stepper.onecmd(view)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
