"""Time travel: what snapshots cost and how fast going back is.

    python benchmarks/timetravel.py [--insns 10000000] [--only loop|faults] [--budget-mib M]

Two workloads of about ``--insns`` instructions each:

* ``loop``: benchmarks/loop.s (a compute loop, paging off), natively;
* ``faults``: benchmarks/stepper.s (demand paging in rounds: a #PF every
  ~900 instructions, under shadow paging a true, a tracing and a hidden
  fault, so page faults and VM exits all along), under shadow paging.

For each, in its own process (so that its peak RSS is its own):

* a free run (``System.run``) without and with snapshots (the default
  policy): host time, the ratio, the snapshots taken and their memory;
* the stepper's engine (``Session``): ``step N`` to the end of the
  workload, then ``back`` over one ``step`` (a restore), ``reverse-step``
  (a restore and a replay, one instruction at a time at the end) and
  ``back`` over the whole ``step N`` (to the start);
* the process's peak RSS and the snapshot store's size.

Times are the process's CPU time and wall-clock time; the targets are
judged on CPU time, which other work on the machine does not inflate (the
load average is printed; the wall figures are meaningful on an idle
machine only).  Targets (each line says whether it is met): ``back``
within 100 ms after 10 million instructions; snapshot memory within its
budget (256 MiB by default; ``--budget-mib`` for a smaller one, which thins
the snapshots out); a free run with snapshots at most 1.3x the host time
of one without.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from emu import programs  # noqa: E402
from emu.asm import assemble_file  # noqa: E402
from emu.system import Config, System  # noqa: E402
from emu.timetravel import DEFAULT_BUDGET, Recorder, SnapshotStore  # noqa: E402
from emu.ui.session import Session  # noqa: E402

WORKLOADS = {"loop": ("loop.s", "native", "ITERATIONS", 5),
             "faults": ("stepper.s", "shadow", "ROUNDS", 53_400)}
BACK_MS = 100           # the target for back after 10M instructions
SNAPSHOT_RATIO = 1.3    # a run with snapshots against one without, host time


def image_for(name: str, insns: int):
    """The workload's program, scaled to about ``insns`` instructions."""
    source, _, knob, per = WORKLOADS[name]
    text = open(os.path.join(HERE, source)).read()
    count = max(1, -(-insns // per))
    text = re.sub(rf"^{knob}\s+equ\s+\d+", f"{knob} equ {count}", text, flags=re.M)
    with tempfile.NamedTemporaryFile("w", suffix=".s", dir=HERE, delete=False) as fh:
        fh.write(text)
    try:
        return assemble_file(fh.name, include_dirs=[programs.include_dir()])
    finally:
        os.unlink(fh.name)


def one(name: str, insns: int, budget: int) -> dict:
    image = image_for(name, insns)
    config = Config(mode=WORKLOADS[name][1], max_cycles=1 << 40)
    out = {"workload": name, "mode": config.mode}
    t0, c0 = time.perf_counter(), time.process_time()
    plain = System(image, config).run()
    out["free_run_s"] = time.perf_counter() - t0
    out["free_run_cpu_s"] = time.process_time() - c0
    out["instructions"] = plain.instructions
    recorder = Recorder(SnapshotStore(budget))
    system = System(image, config)
    recorder.attach(system)
    t0, c0 = time.perf_counter(), time.process_time()
    recorded = system.run()
    out["free_run_snapshots_s"] = time.perf_counter() - t0
    out["free_run_snapshots_cpu_s"] = time.process_time() - c0
    assert recorded.guest_visible() == plain.guest_visible()
    out["free_run_ratio"] = out["free_run_snapshots_s"] / out["free_run_s"]
    out["free_run_cpu_ratio"] = out["free_run_snapshots_cpu_s"] / out["free_run_cpu_s"]
    st = recorder.stats()
    out.update(free_snapshots=st["taken"], free_thinned=st["thinned"],
               free_store_mib=st["bytes"] / 2**20, free_store_peak_mib=st["peak_bytes"] / 2**20)
    del recorder, system

    session = Session(image, config, store=SnapshotStore(budget))
    t0 = time.perf_counter()
    session.step(plain.instructions - 10)
    out["session_step_s"] = time.perf_counter() - t0
    out["session_at"] = session.system.cpu.icount
    out["session_snapshots"] = len(session.recorder.store)
    out["session_thinned"] = session.recorder.store.thinned
    out["session_store_mib"] = session.recorder.store.size / 2**20
    out["session_store_peak_mib"] = session.recorder.store.peak / 2**20

    def timed(motion) -> tuple[float, float]:
        """(wall, CPU) milliseconds of ``motion()``."""
        t0, c0 = time.perf_counter(), time.process_time()
        motion()
        return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000

    def step_back():
        session.step()
        return timed(session.back)
    backs = [step_back() for _ in range(5)]
    out["back_one_step_ms"] = statistics.median(w for w, _ in backs)
    out["back_one_step_cpu_ms"] = statistics.median(c for _, c in backs)
    out["reverse_step_ms"], out["reverse_step_cpu_ms"] = timed(session.reverse_step)

    def to_start():
        while session.history:
            session.back(len(session.history))
    out["back_to_start_ms"], out["back_to_start_cpu_ms"] = timed(to_start)
    out["load_average"] = os.getloadavg()[0]
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--insns", type=int, default=10_000_000)
    ap.add_argument("--only", choices=sorted(WORKLOADS))
    ap.add_argument("--budget-mib", type=int, default=DEFAULT_BUDGET >> 20,
                    help="the snapshot stores' budget (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.json:
        print(json.dumps(one(args.only, args.insns, args.budget_mib << 20)))
        return 0
    for name in [args.only] if args.only else list(WORKLOADS):
        p = subprocess.run([sys.executable, __file__, "--json", "--only", name,
                            "--insns", str(args.insns), "--budget-mib", str(args.budget_mib)],
                           capture_output=True, text=True)
        if p.returncode:
            print(p.stderr, file=sys.stderr)
            return 1
        r = json.loads(p.stdout)
        print(f"{name}: {r['instructions']:,} instructions ({r['mode']}), snapshot budget "
              f"{args.budget_mib} MiB; load average {r['load_average']:.1f} "
              f"on {os.cpu_count()} CPUs")
        print("                                   CPU        wall")
        print(f"  free run                     {r['free_run_cpu_s']:8.2f} s  "
              f"{r['free_run_s']:8.2f} s")
        print(f"  free run with snapshots      {r['free_run_snapshots_cpu_s']:8.2f} s  "
              f"{r['free_run_snapshots_s']:8.2f} s  (x{r['free_run_cpu_ratio']:.2f} CPU, "
              f"x{r['free_run_ratio']:.2f} wall; {r['free_snapshots']} snapshots taken, "
              f"{r['free_thinned']} thinned out, {r['free_store_mib']:.1f} MiB, "
              f"peak {r['free_store_peak_mib']:.1f} MiB)")
        print(f"  stepper: step to {r['session_at']:,}              "
              f"{r['session_step_s']:8.2f} s  ({r['session_snapshots']} snapshots kept, "
              f"{r['session_thinned']} thinned out, {r['session_store_mib']:.1f} MiB, "
              f"peak {r['session_store_peak_mib']:.1f} MiB)")
        for label, key in (("back over one step", "back_one_step"),
                           ("reverse-step", "reverse_step"),
                           ("back to the start", "back_to_start")):
            print(f"  {label:28s} {r[key + '_cpu_ms']:8.1f} ms {r[key + '_ms']:8.1f} ms")
        print(f"  peak RSS                     {r['peak_rss_mib']:8.0f} MiB")
        store_peak = max(r["free_store_peak_mib"], r["session_store_peak_mib"])
        back_cpu = max(r["back_one_step_cpu_ms"], r["back_to_start_cpu_ms"])
        back_wall = max(r["back_one_step_ms"], r["back_to_start_ms"])
        for what, ok in (
                (f"back within {BACK_MS} ms (CPU {back_cpu:.0f}, wall {back_wall:.0f})",
                 back_cpu <= BACK_MS),
                (f"snapshots at most {SNAPSHOT_RATIO}x the host time (CPU)",
                 r["free_run_cpu_ratio"] <= SNAPSHOT_RATIO),
                (f"snapshot memory within {args.budget_mib} MiB "
                 f"(after thinning; peak {store_peak:.1f})",
                 max(r["free_store_mib"], r["session_store_mib"]) <= args.budget_mib)):
            print(f"  target: {what:56s} {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
