"""emu sweep on a real dask.distributed cluster: a LocalCluster of two
worker processes on this machine.  Every wait is bounded: the sweep by the
engine's timeout, the whole module by a watchdog."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys

import pytest

from emu.errors import EmuError
from emu.sweep import (
    Cache,
    DaskCluster,
    InProcess,
    Spec,
    Watcher,
    add_cli_axis,
    make_plan,
    run_sweep,
)

SWEEP_TIMEOUT = 60          # seconds one sweep may take on the cluster
WATCHDOG = 150              # seconds the whole module may take


def spec_of(**axes) -> Spec:
    spec = Spec()
    for name, values in axes.items():
        add_cli_axis(spec, name, values, "test")
    return spec


def without_host_time(rows):
    return [{k: v for k, v in r.items() if k != "host_seconds"} for r in rows]


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster
    faulthandler.dump_traceback_later(WATCHDOG, exit=True, file=sys.stderr)
    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.CRITICAL)
    client = Client(local, timeout=30, set_as_default=False)   # the engine has its own
    try:
        yield local, client
    finally:
        client.close(timeout=20)
        local.close(timeout=20)
        faulthandler.cancel_dump_traceback_later()


def test_a_sweep_on_the_cluster_gives_exactly_the_local_rows(cluster, tmp_path):
    local, _ = cluster
    plan = make_plan(spec_of(guest="hello,paging", mode="native,shadow,nested",
                             shadow_policy="trace-cache,oos-cache"))
    here = run_sweep(plan, InProcess(), Cache(None))
    there = run_sweep(plan, DaskCluster(local.scheduler_address, timeout=SWEEP_TIMEOUT),
                      Cache(tmp_path))
    assert (there.engine.engine, there.engine.workers, there.ran) == ("dask", 2, 8)
    assert there.engine.workers_lost == []
    assert without_host_time(there.rows) == without_host_time(here.rows)
    # What the workers stored is what a later sweep reads back.
    again = run_sweep(plan, InProcess(), Cache(tmp_path))
    assert (again.ran, again.rows) == (0, there.rows)


class KillOneWorker(Watcher):
    """When the first run comes back, SIGKILL a worker that is running one."""

    def __init__(self, client):
        self.client = client
        self.killed = []
        self.notes = []

    def advance(self, record: dict) -> None:
        if self.killed:
            return
        busy = [w for w, keys in self.client.processing().items() if keys]
        assert busy, "no run in flight to interrupt"
        pid = self.client.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(pid, signal.SIGKILL)
        self.killed.append(busy[0])

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_a_worker_killed_in_the_middle_of_a_sweep_loses_no_row(cluster, tmp_path):
    local, client = cluster
    # Runs of a few tenths of a second each, so that some are in flight.
    plan = make_plan(spec_of(guest="multiproc", mode="native,shadow,nested",
                             tlb_entries="16,64"))
    killer = KillOneWorker(client)
    result = run_sweep(plan, DaskCluster(local.scheduler_address, timeout=SWEEP_TIMEOUT),
                       Cache(tmp_path), killer)
    assert result.engine.workers_lost == killer.killed
    assert result.engine.rerun >= 1
    n = result.engine.rerun
    assert result.engine.summary() == (f"1 worker lost ({killer.killed[0]}); "
                                       f"{n} run{'s' * (n != 1)} started again")
    assert killer.notes == [f"worker {killer.killed[0]} lost; its runs go to other workers"]
    assert [(r["outcome"], r["message"]) for r in result.rows] == \
        [("poweroff", "powered off with status 0")] * 6
    here = run_sweep(plan, InProcess(), Cache(None))
    assert without_host_time(result.rows) == without_host_time(here.rows)
    client.wait_for_workers(2, timeout=30)      # the nanny has restarted it


def test_a_scheduler_that_cannot_be_reached_is_one_line():
    with pytest.raises(EmuError) as e:
        DaskCluster("tcp://127.0.0.1:9", connect_timeout=1).connect()
    assert str(e.value).startswith("cannot reach the Dask scheduler at tcp://127.0.0.1:9: ")
    assert "\n" not in str(e.value)


def test_emu_sweep_scheduler_runs_on_the_cluster(cluster, tmp_path, capsys, monkeypatch):
    from emu.cli import main
    local, _ = cluster
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--guest", "hello", "--mode", "native,nested", "--scheduler",
                 local.scheduler_address, "--cache", "c", "-o", "out"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sweep: 2 runs (2 ran, 0 from the cache) in ")
    assert out[0].endswith(f" s on 2 Dask workers at {local.scheduler_address}")
    assert main(["sweep", "--guest", "hello", "--scheduler", local.scheduler_address,
                 "--jobs", "2"]) == 2
    assert capsys.readouterr().err == ("emu: error: --scheduler runs on the cluster's workers: "
                                       "it does not go with --jobs or --in-process\n")
