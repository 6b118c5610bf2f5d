"""``emu sweep``: many runs from one command, locally or on a Dask cluster.

    emu sweep SPEC.toml [axes] [-o DIR] [--csv FILE] [--report DIR]
    emu sweep --guest hello,paging --mode native,shadow,nested --tlb-entries 16,64

Exit status: 0 when every run ended as the guest made it end (power-off,
crash or cycle budget); 5 when some run failed (``error``, ``timeout`` or
``lost``: the rows say why); 2 for a bad spec or bad options, 1 for bad
input (a guest that does not assemble, an output that cannot be written),
130 when interrupted (the finished runs are in the cache: the same command
resumes).
"""

from __future__ import annotations

import os
import sys

from ..cli import EXIT_USAGE, UsageError
from .spec import Spec, SpecError, add_cli_axis, read_spec, timeout_value

EXIT_FAILED_RUNS = 5
AXIS_OPTIONS = (("guest", "a bundled guest's name or a .s file"),
                ("mode", "native, shadow, nested"),
                ("shadow-policy", "trace-cache, trace-drop, oos-cache, oos-drop"),
                ("tlb-entries", "entries per TLB"),
                ("tlb-ways", "TLB associativity"),
                ("machine-mib", "machine memory under a VMM, MiB"),
                ("vmm", "shadow-paging VMMs: Python files of emu lab, or builtin"))


def add_parser(subparsers, name: str) -> None:
    p = subparsers.add_parser(
        name, help="run the product of guests, modes and settings; a table of results",
        description="Run every combination of the axes (or the runs a TOML spec lists) in "
                    "parallel, locally or on a Dask cluster; write one row per run.")
    p.add_argument("spec", nargs="?", metavar="SPEC.toml",
                   help="the sweep: [config], [axes] and/or [[run]] tables")
    axes = p.add_argument_group("axes (comma-separated values; they replace the spec's)")
    for option, what in AXIS_OPTIONS:
        axes.add_argument(f"--{option}", action="append", default=[], metavar="V1,V2",
                          help=what)
    axes.add_argument("--set", action="append", default=[], metavar="FIELD=V1,V2",
                      help="any configuration field (tlb_kind, clock, max_cycles, "
                           "costs.vm_exit ...)")
    out = p.add_argument_group("results")
    out.add_argument("-o", "--out", metavar="DIR",
                     help="the Parquet dataset (a folder; default: NAME-results)")
    out.add_argument("--csv", metavar="FILE", help="the rows as CSV too ('-': standard output)")
    out.add_argument("--report", metavar="DIR",
                     help="tables and plots: DIR/index.md and SVG figures")
    ex = p.add_argument_group("execution")
    ex.add_argument("-j", "--jobs", type=int, default=None,
                    help="local worker processes (default: one per CPU)")
    ex.add_argument("--in-process", action="store_true",
                    help="run everything in this process, one run after the other")
    ex.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                    help="run on this Dask cluster (dask.distributed) instead")
    ex.add_argument("--timeout", metavar="SECONDS",
                    help="host seconds one run may take (default: the spec's, or 600)")
    ex.add_argument("--cache", metavar="DIR",
                    help="where finished runs are kept (default: ~/.cache/emu/sweep)")
    ex.add_argument("--no-cache", action="store_true", help="rerun everything, keep nothing")
    ex.add_argument("--dry-run", action="store_true",
                    help="list the runs and which are cached; run nothing")
    ex.add_argument("--quiet", action="store_true", help="no progress bar, no summary")


def build_spec(args) -> Spec:
    spec = read_spec(args.spec) if args.spec else Spec()
    for option, _ in AXIS_OPTIONS:
        for text in getattr(args, option.replace("-", "_")):
            add_cli_axis(spec, option, text, f"--{option}")
    for text in args.set:
        name, eq, values = text.partition("=")
        if not eq or not name.strip():
            raise SpecError(f"--set {text}: expected FIELD=VALUE[,VALUE...]")
        add_cli_axis(spec, name, values, "--set")
    if args.timeout is not None:
        spec.timeout = timeout_value(args.timeout, "--timeout")
    if not args.spec and not spec.cli_axes:
        raise SpecError("nothing to run: give a SPEC.toml or axes such as --guest hello")
    return spec


def make_engine(args):
    from .engine import DaskCluster, InProcess, LocalProcesses, scheduler_address
    if args.scheduler and (args.in_process or args.jobs is not None):
        raise UsageError("--scheduler runs on the cluster's workers: "
                         "it does not go with --jobs or --in-process")
    if args.scheduler:
        return DaskCluster(scheduler_address(args.scheduler))
    if args.in_process and args.jobs is not None:
        raise UsageError("--in-process runs one run at a time, here: it does not go with "
                         "--jobs")
    if args.in_process:
        return InProcess()
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    if not 1 <= jobs <= 1024:
        raise UsageError(f"--jobs must be between 1 and 1024, not {jobs}")
    return LocalProcesses(jobs)


def require(command: str = "emu sweep") -> None:
    """The sweep's libraries, or one line saying how to get them."""
    import importlib.util
    missing = [name for name in ("dask", "distributed", "pyarrow", "matplotlib")
               if importlib.util.find_spec(name) is None]
    if missing:
        from ..errors import EmuError
        raise EmuError(f"{command} needs {', '.join(missing)}: "
                       "pip install 'shadowpaging-emu[sweep]'")


def main(args) -> int:
    require()
    engine = make_engine(args)              # a bad option is one line before any work
    try:
        spec = build_spec(args)
        from .plan import make_plan
        plan = make_plan(spec)
    except SpecError as e:
        print(f"emu: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from .cache import Cache, default_root
    cache = Cache(None if args.no_cache else (args.cache or default_root()))
    if args.dry_run:
        return dry_run(plan, cache)
    from .runner import run_sweep
    watcher = _watcher(args.quiet)
    try:
        result = run_sweep(plan, engine, cache, watcher)
    except KeyboardInterrupt:
        kept = "kept in the cache: the same command resumes" if cache.root else \
               "not kept (--no-cache)"
        print(f"emu: interrupted; the runs that finished are {kept}", file=sys.stderr)
        return 130
    from .results import write_csv, write_dataset
    meta = {"name": spec.name, "spec": spec.source or None, "emulator": plan.emulator,
            "runs": len(result.rows), "engine": result.engine.engine,
            "workers": result.engine.workers}
    out = args.out or f"{spec.name}-results"
    path = write_dataset(result.rows, out, meta)
    if args.csv:
        write_csv(result.rows, args.csv)
    if args.report:
        from .report import write_report
        write_report(result.rows, args.report, meta)
    if not args.quiet:
        print(summary(result, plan, path, args), file=sys.stderr if args.csv == "-"
              else sys.stdout)
    return EXIT_FAILED_RUNS if result.failed else 0


def summary(result, plan, path: str, args) -> str:
    n = len(result.rows)
    where = {"local": f"{result.engine.workers} local worker process"
                      f"{'es' * (result.engine.workers != 1)}",
             "in-process": "this process",
             "dask": f"{result.engine.workers} Dask workers at {args.scheduler}"}
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(result.outcomes.items()))
    title = f"sweep {plan.spec.name}" if plan.spec.source else "sweep"
    lines = [f"{title}: {n} run{'s' * (n != 1)} ({result.ran} ran, "
             f"{result.cached} from the cache) in {result.seconds:.1f} s on "
             f"{where.get(result.engine.engine, result.engine.engine)}",
             f"  outcomes: {outcomes}"]
    if plan.merged:
        lines.append(f"  {plan.merged} runs named twice were run once")
    lost = result.engine.summary()
    if lost:
        lines.append(f"  {lost}")
    lines.append(f"  results: {path}" + (f", {args.csv}" if args.csv and args.csv != "-"
                                         else "") +
                 (f"; report: {os.path.join(args.report, 'index.md')}" if args.report else ""))
    return "\n".join(lines)


def dry_run(plan, cache) -> int:
    """One line per run: cached or not, and the fields the spec varies."""
    from .spec import describe
    spec = plan.spec
    named = {*spec.axes, *spec.cli_axes, *(k for run in spec.runs for k in run)}
    cached = 0
    for run in plan.runs:
        hit = cache.get(run.key) is not None
        cached += hit
        labels = run.labels()
        shown = {k: v for k, v in labels.items() if k == "guest" or
                 (k in named and v is not None)}
        print(f"{run.index + 1:5d}  {'cached' if hit else 'to run':6s}  {describe(shown)}")
    print(f"{len(plan.runs)} runs, {cached} in the cache")
    return 0


def _watcher(quiet: bool):
    if not quiet and sys.stderr.isatty():
        from .progress import BarWatcher
        return BarWatcher()
    from .progress import NoteWatcher
    return NoteWatcher()
