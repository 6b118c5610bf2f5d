"""Where a sweep's jobs run.

An engine knows nothing of guests or configurations: it runs *jobs* -- a
content key, a function importable on the workers and the payload to call
it with -- and hands each job's *record* (a JSON-able dict) back to the
caller as soon as it arrives, in the caller's thread.  A run of the
emulator is one kind of job (``cell.run_cell``); grading a submission can
be another, with its own function and key, through the same engines, cache
and results.

* ``InProcess``: one job after the other in this process (debugging; the
  baseline of the benchmark).
* ``LocalProcesses``: worker processes on this machine, through Dask's
  multiprocessing scheduler.  A worker process that dies takes the pool
  with it; the jobs that were running then are suspects.  The jobs not
  finished go to a new pool, the suspects after the others and one at a
  time, so that a job that kills its worker hurts no other; a job that was
  running each time its pool died, ``ALLOWED_FAILURES`` times, comes back
  as a ``lost`` record (as on a cluster).
* ``DaskCluster``: a ``dask.distributed`` scheduler (``tcp://HOST:PORT``).
  A worker that dies is replaced by its nanny and the scheduler gives its
  tasks to others; a task whose workers die ``allowed-failures`` times in
  a row (3 by default) comes back as a ``lost`` record.

Every engine returns an ``EngineReport``: how many workers it used, which
died, how many of the jobs had to run again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALLOWED_FAILURES = 3            # deaths of its worker before a job is lost
KEY_PREFIX = "emu-"             # task keys on a scheduler: emu-<content key>
MAX_GATHERS = 10                # tries to fetch a result whose worker died meanwhile


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(payload)`` returns its record."""

    key: str                                # content address of the record
    fn: Callable[[Any], dict]               # importable on every worker
    payload: Any = None


@dataclass
class EngineReport:
    engine: str
    workers: int
    workers_lost: list = field(default_factory=list)    # names of dead workers
    rerun: int = 0              # jobs that ran again because their worker died
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        if not self.workers_lost:
            return ""
        n = len(self.workers_lost)
        return (f"{n} worker{'s' * (n != 1)} lost ({', '.join(self.workers_lost)}); "
                f"{self.rerun} run{'s' * (self.rerun != 1)} started again")


def lost_record(message: str) -> dict:
    return {"outcome": "lost", "exit_status": None, "message": message, "transient": True}


class _Boxed:
    """A payload that the Dask graph must pass as it is, not look into."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __getstate__(self):
        return (self.value,)

    def __setstate__(self, state):
        self.value = state[0]


def _call(fn, boxed: _Boxed) -> dict:
    """``fn(payload)``; a job that raises is an ``error`` record, not a sweep
    that stops (a run of the emulator never raises: ``cell.run_cell``)."""
    try:
        return fn(boxed.value)
    except Exception as e:
        return {"outcome": "error", "exit_status": None, "transient": True,
                "message": f"the job raised {type(e).__name__}: {e}"}


class InProcess:
    """Every job in this process, one after the other."""

    name = "in-process"

    def run(self, jobs: list[Job], on_done) -> EngineReport:
        for job in jobs:
            on_done(job, _call(job.fn, _Boxed(job.payload)))
        return EngineReport(self.name, 1)


class LocalProcesses:
    """``workers`` processes on this machine (Dask's multiprocessing scheduler)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = workers
        self.on_note: Callable[[str], None] | None = None     # live messages

    def run(self, jobs: list[Job], on_done) -> EngineReport:
        from concurrent.futures.process import BrokenProcessPool

        import dask.multiprocessing
        from dask.callbacks import Callback

        report = EngineReport(self.name, self.workers)
        left = {KEY_PREFIX + job.key: job for job in jobs}
        deaths = dict.fromkeys(left, 0)     # pools that died while the job ran
        running: set[str] = set()

        def pretask(key, dsk, state):
            running.add(key)

        def posttask(key, result, dsk, state, worker_id):
            running.discard(key)
            job = left.pop(key, None)
            if job is not None:
                on_done(job, result)

        while left:
            # The jobs never under suspicion first, on every worker; then the
            # suspects, one at a time, so that a death names its job.
            fresh = [k for k in left if deaths[k] == 0]
            keys, workers = (fresh, self.workers) if fresh else (list(left), 1)
            graph = {k: (_call, left[k].fn, _Boxed(left[k].payload)) for k in keys}
            running.clear()
            try:
                with Callback(pretask=pretask, posttask=posttask):
                    dask.multiprocessing.get(graph, keys, num_workers=workers, chunksize=1)
            except BrokenProcessPool:
                # Which process died is not known: the pool is gone, and every
                # job it was running starts again.
                # (None running: it died before it took one; all are suspects.)
                suspects = [k for k in running if k in left] or \
                    [k for k in keys if k in left]
                report.workers_lost.append(f"local pool #{len(report.workers_lost) + 1}")
                report.rerun += len(suspects)
                if self.on_note is not None:
                    self.on_note("a worker process died; the runs not finished go to a "
                                 "new pool")
                for k in suspects:
                    deaths[k] += 1
                    if deaths[k] >= ALLOWED_FAILURES:
                        report.rerun -= 1
                        on_done(left.pop(k), lost_record(
                            f"its worker process died each of the {deaths[k]} times "
                            "it ran"))
        return report


_ADDRESS = re.compile(r"(?:(?:tcp|tls|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]@]+):(\d{1,5})")


def scheduler_address(text: str) -> str:
    """``--scheduler``'s value, checked before anything runs: ``tcp://HOST:PORT``
    (or tls://, ws://, wss://; ``HOST:PORT`` is tcp); a UsageError if not."""
    match = _ADDRESS.fullmatch(text.strip())
    if not match or not 0 < int(match[2]) < 65536:
        from ..cli import UsageError
        raise UsageError(f"--scheduler {text}: expected the scheduler's address, "
                         "tcp://HOST:PORT")
    return text.strip()


class DaskCluster:
    """The workers of a ``dask.distributed`` scheduler."""

    name = "dask"

    def __init__(self, address: str, connect_timeout: float = 10.0,
                 timeout: float | None = None):
        self.address = address
        self.connect_timeout = connect_timeout
        self.timeout = timeout          # seconds for the whole sweep (None: no limit)
        self.on_note: Callable[[str], None] | None = None     # live messages

    def connect(self):
        import asyncio

        from distributed import Client
        from distributed.comm import connect

        async def probe():
            comm = await connect(self.address, timeout=self.connect_timeout)
            await comm.close()
        try:
            # The handshake first: a Client that fails half made (something
            # else answers there) hangs in its finaliser when Python exits.
            asyncio.run(probe())
            return Client(self.address, timeout=self.connect_timeout, set_as_default=False)
        except Exception as e:      # (whatever answers there, if anything, may be no scheduler)
            from ..errors import EmuError
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            if isinstance(e, MemoryError):  # a frame length read from something else's bytes
                why = "what answers there does not speak Dask's protocol"
            raise EmuError(f"cannot reach the Dask scheduler at {self.address}: {why}") from None

    def run(self, jobs: list[Job], on_done) -> EngineReport:
        from distributed import as_completed
        client = self.connect()
        try:
            return self._run(client, jobs, on_done, as_completed)
        finally:
            client.close()

    def _run(self, client, jobs, on_done, as_completed) -> EngineReport:
        from distributed import KilledWorker
        workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        report = EngineReport(self.name, workers)
        by_key = {KEY_PREFIX + job.key: job for job in jobs}

        def on_event(event) -> None:
            # Scheduler events reach us in order with the results, so every
            # loss is known by the time the last result (a rerun) arrives.
            _, msg = event
            if (isinstance(msg, dict) and msg.get("action") == "remove-worker"
                    and not msg.get("expected")):
                report.workers_lost.append(str(msg.get("worker")))
                again = {*msg.get("processing-tasks", ()), *msg.get("lost-computed-tasks", ())}
                report.rerun += len(set(map(str, again)) & set(by_key))
                if self.on_note is not None:
                    self.on_note(f"worker {msg.get('worker')} lost; its runs go to other "
                                 "workers")
        client.subscribe_topic("all", on_event)
        futures = [client.submit(_call, job.fn, _Boxed(job.payload), key=key, pure=False)
                   for key, job in by_key.items()]
        gathers: dict[str, int] = {}
        done = as_completed(futures, timeout=self.timeout, loop=client.loop)
        for future in done:
            job = by_key[future.key]
            try:
                record = future.result()
            except KilledWorker as e:
                record = lost_record(f"every worker that ran it died ({e})")
            except Exception as e:
                if future.status != "error" and gathers.get(future.key, 0) < MAX_GATHERS:
                    # Its result was on a worker that died before we took it:
                    # the scheduler computes it again; wait for that.
                    gathers[future.key] = gathers.get(future.key, 0) + 1
                    done.add(future)
                    continue
                # The workers cannot import emu, or unpickle the job.
                record = {"outcome": "error", "exit_status": None, "transient": True,
                          "message": f"on the cluster: {type(e).__name__}: {e}"}
            on_done(job, record)
            future.release()
        client.unsubscribe_topic("all")
        return report
