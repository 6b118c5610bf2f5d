"""emu sweep on a real dask.distributed cluster: a LocalCluster of two
worker processes on this machine.  Every wait is bounded: the sweep by the
engine's timeout, the whole module by a watchdog."""

from __future__ import annotations

import faulthandler
import functools
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
    runner,
)
from emu.sweep.cell import run_cell

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
                         dashboard_address=":0", silence_logs=logging.CRITICAL)
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


class Notes(Watcher):
    def __init__(self):
        self.notes = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def die_in_the_middle(marker: str, cell):
    """``run_cell``, except that the first worker to run the shadow run with
    16 TLB entries is killed (SIGKILL) in the middle of it, once: the
    worker's address goes to ``marker``."""
    c = cell.config
    if (c.mode, c.tlb_entries) == ("shadow", 16):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return run_cell(cell)
        from distributed import get_worker

        from emu.system import System
        address = get_worker().address

        def kill(_system) -> None:      # after the run's first batch
            os.write(fd, address.encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        system = System(cell.image, cell.config)
        system.progress = kill
        system.run()
    return run_cell(cell)


def test_a_worker_killed_in_the_middle_of_a_sweep_loses_no_row(cluster, tmp_path,
                                                               monkeypatch):
    local, client = cluster
    marker = str(tmp_path / "killed")
    # The runs' function, as the workers import it: this module's, bound to the marker.
    monkeypatch.setattr(runner, "run_cell", functools.partial(die_in_the_middle, marker))
    plan = make_plan(spec_of(guest="paging", mode="native,shadow,nested",
                             tlb_entries="16,64"))
    watcher = Notes()
    result = run_sweep(plan, DaskCluster(local.scheduler_address, timeout=SWEEP_TIMEOUT),
                       Cache(tmp_path / "cache"), watcher)
    killed = open(marker).read()
    assert result.engine.workers_lost == [killed]
    n = result.engine.rerun
    assert n >= 1                       # the run it was in, and any queued there
    assert result.engine.summary() == (f"1 worker lost ({killed}); "
                                       f"{n} run{'s' * (n != 1)} started again")
    assert watcher.notes == [f"worker {killed} lost; its runs go to other workers"]
    assert [(r["outcome"], r["message"]) for r in result.rows] == \
        [("poweroff", "powered off with status 0")] * 6
    here = run_sweep(plan, InProcess(), Cache(None))
    assert without_host_time(result.rows) == without_host_time(here.rows)
    client.wait_for_workers(2, timeout=30)      # the nanny has restarted it


def test_a_students_vmm_runs_on_the_cluster_as_here(cluster, tmp_path):
    """A Dask worker runs a task on a thread; a student's VMM needs the
    main thread's alarm, so the worker runs it in a child process."""
    local, _ = cluster
    mine = tmp_path / "mine.py"
    mine.write_text("from emu.vmm.builtin import BuiltinShadowVmm\n\n\n"
                    "class Mine(BuiltinShadowVmm):\n    pass\n")
    plan = make_plan(spec_of(guest="hello", mode="shadow", vmm=f"builtin,{mine}"))
    there = run_sweep(plan, DaskCluster(local.scheduler_address, timeout=SWEEP_TIMEOUT),
                      Cache(None))
    here = run_sweep(plan, InProcess(), Cache(None))
    assert [r["outcome"] for r in there.rows] == ["poweroff", "poweroff"], there.rows[0]["message"]
    assert without_host_time(there.rows) == without_host_time(here.rows)


def test_a_scheduler_that_cannot_be_reached_is_one_line():
    with pytest.raises(EmuError) as e:
        DaskCluster("tcp://127.0.0.1:9", connect_timeout=1).connect()
    assert str(e.value).startswith("cannot reach the Dask scheduler at tcp://127.0.0.1:9: ")
    assert "\n" not in str(e.value)


def test_something_else_at_the_schedulers_address_is_one_line():
    # (a web server, say: its bytes read as a frame length of exbibytes)
    import socket
    import subprocess
    import threading
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        for _ in range(4):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" * 3)
    threading.Thread(target=answer, daemon=True).start()
    try:
        done = subprocess.run([sys.executable, "-m", "emu", "sweep", "--guest", "hello",
                               "--scheduler", f"tcp://127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert (done.returncode, done.stderr) == (
        1, f"emu: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: what "
           "answers there does not speak Dask's protocol\n")


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


def test_emu_lab_check_many_grades_on_the_cluster_as_here(cluster, tmp_path, capsys):
    """A class's VMMs through the same engine on the cluster: the same table."""
    from pathlib import Path

    from emu.lab.many import grade_many
    mutants = Path(__file__).parent / "lab_mutants"
    folder = tmp_path / "class"
    (folder / "carol").mkdir(parents=True)
    (folder / "alice.py").write_text((mutants / "other_page.py").read_text())
    (folder / "carol" / "vmm.py").write_text((mutants / "raises.py").read_text())
    (folder / "dave.py").write_text("class (:\n")
    local, _ = cluster
    there = grade_many(str(folder), [1], DaskCluster(local.scheduler_address,
                                                     timeout=SWEEP_TIMEOUT))
    here = grade_many(str(folder), [1], InProcess())
    assert [r["score"] for r in here] == [2, 2, 0]
    assert there == here
    from emu.cli import main
    from emu.lab.many import table
    assert main(["lab", "check", "--many", str(folder), "--level", "1", "--only",
                 "--scheduler", local.scheduler_address]) == 0
    assert capsys.readouterr().out == table(here, str(folder)) + "\n"
