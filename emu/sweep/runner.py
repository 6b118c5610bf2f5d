"""A sweep from plan to rows: look every run up in the cache, give the
others to an engine, store each record the moment it arrives, build the
rows in the plan's order."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from .cache import Cache
from .cell import RunCell, run_cell
from .engine import EngineReport, Job
from .plan import Plan
from .results import build_rows

FAILED = ("error", "timeout", "lost")     # outcomes that are not the guest's own


@dataclass
class SweepResult:
    rows: list
    ran: int                    # records computed now
    cached: int                 # records found in the cache
    engine: EngineReport
    seconds: float
    outcomes: Counter = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return sum(self.outcomes[o] for o in FAILED)


class Watcher:
    """What a sweep tells as it goes (the command line draws a progress bar)."""

    def start(self, total: int, done: int) -> None: ...
    def advance(self, record: dict) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self) -> None: ...


def jobs_for(plan: Plan, cache: Cache) -> tuple[dict, list]:
    """(key -> record found in the cache, the jobs still to run)."""
    found, jobs = {}, {}
    timeout = plan.spec.timeout
    for run in plan.runs:
        if run.key in found or run.key in jobs:
            continue
        record = cache.get(run.key)
        if record is not None:
            found[run.key] = record
        else:
            cell = RunCell(plan.images[run.path], run.config, timeout, plan.emulator)
            jobs[run.key] = Job(run.key, run_cell, cell)
    return found, list(jobs.values())


def run_sweep(plan: Plan, engine, cache: Cache, watcher: Watcher | None = None) -> SweepResult:
    watcher = watcher or Watcher()
    t0 = time.perf_counter()
    records, jobs = jobs_for(plan, cache)
    cached = len(records)

    def on_done(job: Job, record: dict) -> None:
        cache.put(job.key, record)          # first: an interrupt after this keeps it
        records[job.key] = record
        watcher.advance(record)

    if hasattr(engine, "on_note"):
        engine.on_note = watcher.note
    watcher.start(cached + len(jobs), cached)
    try:
        report = engine.run(jobs, on_done)
    finally:
        watcher.stop()
    rows = build_rows(plan.runs, records)
    outcomes = Counter(r["outcome"] for r in rows)
    return SweepResult(rows, len(jobs), cached, report, time.perf_counter() - t0, outcomes)
