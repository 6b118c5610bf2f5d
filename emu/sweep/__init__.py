"""``emu sweep``: the product of guests, modes and settings, run in
parallel -- in local worker processes or on a Dask cluster -- with one row
of statistics per run, a content-addressed cache and the standard tables.

    spec = read_spec("examples/sweeps/forkwait.toml")     # or Spec() + axes
    plan = make_plan(spec)                               # assembled, validated, keyed
    result = run_sweep(plan, LocalProcesses(2), Cache(dir))
    write_dataset(result.rows, "out")                    # pd.read_parquet("out")

The layers: ``spec`` (what to run) -> ``plan`` (runs, configs, keys) ->
``runner`` (cache look-ups, an engine, rows) with ``engine`` (where jobs
run: generic jobs of a key, a function and a payload), ``cell`` (the job
that runs the emulator), ``cache``, ``results`` and ``report``.
"""

from .cache import Cache
from .cell import RunCell, emulator_version, run_cell, run_key
from .engine import DaskCluster, EngineReport, InProcess, Job, LocalProcesses
from .plan import Plan, Run, make_plan
from .results import build_rows, write_csv, write_dataset
from .runner import SweepResult, Watcher, run_sweep
from .spec import Spec, SpecError, add_cli_axis, read_spec

__all__ = [
    "Cache", "DaskCluster", "EngineReport", "InProcess", "Job", "LocalProcesses", "Plan",
    "Run", "RunCell", "Spec", "SpecError", "SweepResult", "Watcher", "add_cli_axis",
    "build_rows", "emulator_version", "make_plan", "read_spec", "run_cell", "run_key",
    "run_sweep", "write_csv", "write_dataset",
]
