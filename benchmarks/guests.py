"""The teaching guests' speed: every bundled guest in every mode, against the
compute loop measured in the same run.

    python benchmarks/guests.py [--quick] [--repeat N] [--wall] [--readme]

For each guest of ``guest_programs/`` (with the options its ``emu-options``
line asks for), natively, under shadow paging with each policy (``--quick``:
the default policy only) and under nested paging:

* instructions per host second, and that rate as a ratio to the compute
  loop's (``benchmarks/loop.s``, natively, measured in the same run: in
  the rounds of each guest, the guest's ratio over those runs);
* VM exits per host second;
* host time under shadow paging and under nested paging over native.

Then the figures of the exit path and of the suite:

* hidden faults per host second end to end (``benchmarks/touch.s`` under
  shadow paging: 20,000 pages, each a guest access, a VM exit, the VMM's
  steps 2-5, the VM entry, the restart's walk and TLB fill);
* the guest suite: every guest natively, under shadow paging (default
  policy) and under nested paging, as ``emu compare`` does it (assembled
  once, run in each mode, each run's result made), in a fresh interpreter
  (nothing translated or assembled before), in total.

Each run's time is that of the simulation (``System.run`` without the final
hash of guest memory), the median of ``--repeat`` runs (default 3; 1 with
``--quick``; a run shorter than 50 ms is repeated until 50 ms have run, up
to 200 times) after one run that is not counted.  A guest's modes are run
in rounds, one run of each in turn (the loop too, in the first ``--repeat``
rounds), so that a slower spell of the machine falls on all of them alike
and their ratios keep.  Host time is the process's
CPU time, which is what the emulator (single-threaded) used whatever else
the machine was doing;
``--wall`` takes wall-clock time instead (what an idle machine shows).

The targets are checked and printed at the end.  ``--readme`` rewrites the
table between the ``<!-- speed -->`` and ``<!-- /speed -->`` markers of
README.md with this run's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from emu import programs  # noqa: E402
from emu.cli import build_parser, config_from, load  # noqa: E402
from emu.system import Config, System  # noqa: E402
from emu.vmm.shadow import POLICIES  # noqa: E402

# Guests whose exits are the point of the story they tell (guest_programs/
# README.md): page faults the VMM handles (demand, stale_tlb, mprotect,
# pager, forkwait's fork), large pages the shadow splinters (bigpages), a
# TLB too small for the working set (tlbthrash), a page-table walk fault
# after fault (paging).  Shadow paging must stay within 1.5x of native on
# every other guest.
EXITS_ARE_THE_POINT = frozenset({"paging", "stale_tlb", "demand", "mprotect", "forkwait",
                                 "pager", "bigpages", "tlbthrash"})
NATIVE_RATIO = 0.3            # every guest natively >= 0.3x the loop's rate
SHADOW_RATIO = 1.5            # shadow host time <= 1.5x native (see above)
HIDDEN_PER_SECOND = 100_000   # hidden faults per host second, end to end
SUITE_BEFORE = 5.4            # seconds the guest suite took before this work
SUITE_SPEEDUP = 5             # ... and how much faster it must be
BEGIN, END = "<!-- speed -->", "<!-- /speed -->"
SHORT, MOST = 0.05, 200       # a short run is measured this many seconds, in this many runs at most


def _clock(wall: bool):
    return time.perf_counter if wall else time.process_time


def timed_run(image, config: Config, clock) -> tuple[float, object]:
    """(host seconds of the simulation, the system after it)."""
    system = System(image, config)
    t0 = clock()
    system.start()
    system.env.run(until=system._vcpu_process)
    return clock() - t0, system


def measure(image, config: Config, repeat: int, clock) -> dict:
    """One figure: ``measure_rounds`` of a single run."""
    return measure_rounds([("", image, config)], repeat, clock)[""]


def measure_rounds(runs: list, repeat: int, clock, reference=None) -> dict:
    """The figures of each of ``runs`` ((label, image, config)): the median
    of ``repeat`` runs -- more for runs shorter than ``SHORT`` seconds: as
    many as take ``SHORT`` in all, up to ``MOST`` (one run of a small guest
    is a fraction of a millisecond, and a garbage collection or a clock tick
    in it would be its figure) -- after one that is not counted (the blocks
    it translates are reused by every later run in the process, so no mode
    pays for translating the guest's code and the next gets it for free).
    How many is decided by the runs counted, not by the first: it
    translates, and may take many times as long.

    The runs are made in rounds, one of each in turn: a slower spell of a
    shared machine (one figure's runs and the next's, made one after the
    other, differed by half here) falls on every mode alike, and their
    ratios -- shadow or nested over native -- keep what it does to all.
    A ``reference`` (label, image, config) -- the compute loop, a long run
    -- joins the first ``repeat`` rounds only (its uncounted run is the
    caller's)."""
    for _, image, config in runs:
        timed_run(image, config, clock)
    times = {label: [] for label, _, _ in runs}
    last = {}
    rounds = 0
    while rounds < repeat or (rounds < MOST and min(map(sum, times.values())) < SHORT):
        for label, image, config in runs:
            t, last[label] = timed_run(image, config, clock)
            times[label].append(t)
        if reference is not None and rounds < repeat:
            label, image, config = reference
            t, last[label] = timed_run(image, config, clock)
            times.setdefault(label, []).append(t)
        rounds += 1
    out = {}
    for label in times:
        system = last[label]
        exits = system.vmm.stats()["exits_total"] if system.vmm is not None else 0
        out[label] = {"seconds": statistics.median(times[label]),
                      "instructions": system.cpu.icount, "exits": exits,
                      "outcome": system.outcome or "budget"}
    return out


def guest_config(name: str) -> Config:
    args = build_parser().parse_args(["run", name, *programs.default_options(
        programs.resolve(name))])
    return config_from(args)


def modes(quick: bool) -> list[tuple[str, dict]]:
    out = [("native", {"mode": "native"})]
    for policy in (POLICIES[:1] if quick else POLICIES):
        out.append((f"shadow {policy}", {"mode": "shadow", "shadow_policy": policy}))
    out.append(("nested", {"mode": "nested"}))
    return out


def suite_seconds(clock) -> float:
    """The guest suite, in this (fresh) interpreter: host seconds.  The
    options each guest's ``emu-options`` line asks for are read first: the
    benchmark's set-up, not the emulator's work."""
    configs = [(name, guest_config(name)) for name, _ in programs.catalogue()]
    t0 = clock()
    for name, config in configs:
        image = load(name)
        for mode in ("native", "shadow", "nested"):
            System(image, config.with_(mode=mode)).run()
    return clock() - t0


def fresh_suite_seconds(wall: bool) -> float:
    cmd = [sys.executable, os.path.abspath(__file__), "--suite-only"] + (
        ["--wall"] if wall else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["seconds"]


def hidden_rate(repeat: int, clock) -> tuple[float, int]:
    image = load(os.path.join(HERE, "touch.s"))
    m = measure(image, Config(mode="shadow", mem_mib=128), repeat, clock)
    _, system = timed_run(image, Config(mode="shadow", mem_mib=128), clock)
    hidden = system.vmm.faults["hidden"]
    return hidden / m["seconds"], hidden


def collect(args) -> dict:
    clock = _clock(args.wall)
    repeat = args.repeat or (1 if args.quick else 3)
    loop_image = load(os.path.join(HERE, "loop.s"))
    timed_run(loop_image, Config(mode="native"), clock)     # (translates)
    rows = []
    for name, _ in programs.catalogue():
        image, config = load(name), guest_config(name)
        # The loop runs in the guest's rounds too (the first ``repeat``):
        # its "x loop" is over the machine of the same moments.
        got = measure_rounds([(label, image, config.with_(**changes))
                              for label, changes in modes(args.quick)], repeat, clock,
                             reference=("loop", loop_image, Config(mode="native")))
        loop = got.pop("loop")
        rows.append({"guest": name, "loop_rate": loop["instructions"] / loop["seconds"],
                     "modes": got})
    rate, hidden = hidden_rate(repeat, clock)
    loop_rate = statistics.median(r["loop_rate"] for r in rows)
    return {"loop_rate": loop_rate, "rows": rows, "hidden_rate": rate, "hidden": hidden,
            "suite": fresh_suite_seconds(args.wall), "repeat": repeat,
            "clock": "wall-clock" if args.wall else "CPU", "quick": args.quick,
            "command": " ".join(["python benchmarks/guests.py"]
                                + (["--quick"] if args.quick else [])
                                + ([f"--repeat {args.repeat}"] if args.repeat else [])
                                + (["--wall"] if args.wall else []) + ["--readme"])}


# --- reporting -------------------------------------------------------------------------

def _ratio(row: dict, label: str) -> float:
    m = row["modes"]
    return m[label]["seconds"] / m["native"]["seconds"]


def _loop(data: dict, row: dict) -> float:
    """The loop's rate a guest's "x loop" is over: measured in the guest's
    rounds (JSON figures written before that was so: the run's one)."""
    return row.get("loop_rate", data["loop_rate"])


def targets(data: dict) -> list[tuple[str, bool, str]]:
    """(target, met, the figures) of every target."""
    out = []
    slow = [(r["guest"], r["modes"]["native"]["instructions"]
             / r["modes"]["native"]["seconds"] / _loop(data, r)) for r in data["rows"]]
    worst = min(slow, key=lambda x: x[1])
    below = [g for g, x in slow if x < NATIVE_RATIO]
    out.append((f"every guest natively >= {NATIVE_RATIO}x the loop's rate", not below,
                f"lowest {worst[0]} {worst[1]:.2f}x" + (
                    f"; below: {', '.join(below)}" if below else "")))
    label = "shadow " + POLICIES[0]
    plain = [(r["guest"], _ratio(r, label)) for r in data["rows"]
             if r["guest"] not in EXITS_ARE_THE_POINT]
    over = [g for g, x in plain if x > SHADOW_RATIO]
    worst = max(plain, key=lambda x: x[1])
    out.append((f"shadow within {SHADOW_RATIO}x of native where exits are not the point",
                not over, f"highest {worst[0]} {worst[1]:.2f}x" + (
                    f"; over: {', '.join(over)}" if over else "")))
    out.append((f">= {HIDDEN_PER_SECOND:,} hidden faults per host second end to end",
                data["hidden_rate"] >= HIDDEN_PER_SECOND,
                f"{data['hidden_rate']:,.0f} per second ({data['hidden']:,} in touch.s)"))
    goal = SUITE_BEFORE / SUITE_SPEEDUP
    out.append((f"the guest suite (every guest, three modes) <= {goal:.2f} s "
                f"({SUITE_SPEEDUP}x faster than {SUITE_BEFORE} s)", data["suite"] <= goal,
                f"{data['suite']:.2f} s ({SUITE_BEFORE / data['suite']:.1f}x)"))
    return out


def table(data: dict) -> list[str]:
    """The Markdown table of every guest (the README's)."""
    labels = list(data["rows"][0]["modes"])
    shadow = [lb for lb in labels if lb.startswith("shadow")]
    head = ["guest", "instructions", "native M instr/s", "x loop"]
    head += [f"{lb} / native" for lb in shadow] + ["nested / native", "shadow exits/s",
                                                   "nested exits/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in data["rows"]:
        m = r["modes"]
        nat = m["native"]
        rate = nat["instructions"] / nat["seconds"]
        cells = [r["guest"] + (" *" if r["guest"] in EXITS_ARE_THE_POINT else ""),
                 f"{nat['instructions']:,}", f"{rate / 1e6:.2f}", f"{rate / _loop(data, r):.2f}"]
        cells += [f"{_ratio(r, lb):.2f}" for lb in shadow]
        cells.append(f"{_ratio(r, 'nested'):.2f}")
        for lb in (shadow[0], "nested"):
            cells.append(f"{m[lb]['exits'] / m[lb]['seconds']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(data: dict) -> str:
    lines = [f"emu guest benchmark: median of {data['repeat']} run"
             f"{'s' if data['repeat'] > 1 else ''} (of more for a short one), "
             f"{data['clock']} time, "
             f"Python {platform.python_version()}",
             f"loop.s natively: {data['loop_rate'] / 1e6:.2f} M instr/s "
             "(the median of its runs, made in each guest's rounds)", ""]
    lines += table(data)
    lines += ["", "* the guest's exits are the point of its story (no 1.5x target)", ""]
    for what, met, figures in targets(data):
        lines.append(f"[{'met' if met else 'MISSED'}] {what}: {figures}")
    return "\n".join(lines)


def readme_block(data: dict) -> str:
    lines = [BEGIN, "",
             f"`{data.get('command', 'python benchmarks/guests.py --readme')}` wrote this "
             "table: every bundled "
             f"guest natively, under shadow paging"
             f"{'' if data.get('quick') else ' with each policy'} and under nested "
             f"paging ({data['clock']} time, " + (
                 "one run each" if data['repeat'] == 1 else f"median of {data['repeat']} runs") +
             ", a run under 50 ms repeated up to 200 times for its median" +
             f"{', the default shadow policy only' if data.get('quick') else ''}; loop.s "
             f"natively ran {data['loop_rate'] / 1e6:.2f} M instr/s in the same run (the "
             "median of its runs, made in each guest's rounds; \"x loop\" is a guest's "
             "native rate over the loop's in its rounds); a guest's modes and the loop ran "
             "in rounds, one run of each in turn; a \\* marks the guests whose exits are "
             "the point).", ""]
    lines += table(data)
    lines += [""]
    for what, met, figures in targets(data):
        lines.append(f"* {what}: {figures} ({'met' if met else 'not met'})")
    lines += ["", END]
    return "\n".join(lines)


def write_readme(data: dict, path: str = os.path.join(ROOT, "README.md")) -> None:
    with open(path) as fh:
        text = fh.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to rewrite")
    text = text[:start] + readme_block(data) + text[end + len(END):]
    with open(path, "w") as fh:
        fh.write(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one run each, the default shadow policy only")
    ap.add_argument("--repeat", type=int, default=0, help="runs per figure (median)")
    ap.add_argument("--wall", action="store_true", help="wall-clock time, not CPU time")
    ap.add_argument("--readme", action="store_true",
                    help="rewrite README.md's speed table with this run's figures")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--suite-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeat < 0:
        ap.error("--repeat must be positive")
    if args.suite_only:
        print(json.dumps({"seconds": suite_seconds(_clock(args.wall))}))
        return 0
    data = collect(args)
    print(report(data))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1)
    if args.readme:
        write_readme(data)
        print("README.md: speed table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
