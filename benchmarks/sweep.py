"""Sweep throughput: runs per second of the same sweep, four ways.

    python benchmarks/sweep.py [--quick] [--repeat N] [--tlb-entries 8,16,32,64]

* one by one in this process (``InProcess``): the baseline;
* 1 and 2 local worker processes (``LocalProcesses``: Dask's
  multiprocessing scheduler; the time includes starting the processes,
  which every sweep pays);
* a ``dask.distributed`` LocalCluster of 2 worker processes
  (``DaskCluster``; the cluster is started once, before the clock, as a
  cluster is long-lived; its start-up time is printed apart).

The sweep: every bundled guest of a few tenths of a second (paging, demand,
multiproc, tlbthrash, forkwait) in the three modes, 15 runs, no cache;
``--tlb-entries`` crosses them with TLB sizes (4 sizes: 60 runs), so that
starting the worker processes (about a second a sweep) weighs less.  Each
figure is the median of ``--repeat`` sweeps.  With 2 cores, 2 workers can
at best double the rate of one.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from emu.sweep import (  # noqa: E402
    Cache,
    DaskCluster,
    InProcess,
    LocalProcesses,
    Spec,
    add_cli_axis,
    make_plan,
    run_sweep,
)

GUESTS = "paging,demand,multiproc,tlbthrash,forkwait"
QUICK_GUESTS = "paging,demand"


def plan_for(guests: str, tlb_entries: str | None = None):
    spec = Spec(name="benchmark")
    add_cli_axis(spec, "guest", guests, "benchmark")
    add_cli_axis(spec, "mode", "native,shadow,nested", "benchmark")
    if tlb_entries:
        add_cli_axis(spec, "tlb_entries", tlb_entries, "--tlb-entries")
    return make_plan(spec)


def timed(plan, engine, repeat: int) -> tuple[float, list]:
    times, rows = [], None
    for _ in range(repeat):
        result = run_sweep(plan, engine, Cache(None))
        assert all(r["outcome"] == "poweroff" for r in result.rows), result.outcomes
        times.append(result.seconds)
        rows = result.rows
    return statistics.median(times), rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two guests instead of five")
    p.add_argument("--repeat", type=int, default=3, help="sweeps per figure (median)")
    p.add_argument("--tlb-entries", metavar="N1,N2", help="cross the runs with these TLB sizes")
    args = p.parse_args()
    plan = plan_for(QUICK_GUESTS if args.quick else GUESTS, args.tlb_entries)
    n = len(plan.runs)
    tlb = f" x tlb_entries {args.tlb_entries}" if args.tlb_entries else ""
    print(f"sweep of {n} runs ({QUICK_GUESTS if args.quick else GUESTS} x native, shadow, "
          f"nested{tlb}), median of {args.repeat}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    figures = {}
    base, rows = timed(plan, InProcess(), args.repeat)
    figures["one by one, this process"] = base
    for workers in (1, 2):
        figures[f"{workers} local worker process{'es' * (workers > 1)}"], _ = \
            timed(plan, LocalProcesses(workers), args.repeat)
    from distributed import LocalCluster
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    started = time.perf_counter() - t0
    try:
        engine = DaskCluster(cluster.scheduler_address, timeout=600)
        run_sweep(plan, engine, Cache(None))        # workers import emu once
        figures["LocalCluster, 2 workers"], there = timed(plan, engine, args.repeat)
    finally:
        cluster.close()
    strip = [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]
    assert strip == [{k: v for k, v in r.items() if k != "host_seconds"} for r in there]
    print(f"{'':32s} {'seconds':>8s} {'runs/s':>8s} {'x one by one':>13s}")
    for name, seconds in figures.items():
        print(f"{name:32s} {seconds:8.2f} {n / seconds:8.2f} {base / seconds:13.2f}")
    print(f"(LocalCluster start-up, not counted above: {started:.2f} s; load average "
          f"{os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
