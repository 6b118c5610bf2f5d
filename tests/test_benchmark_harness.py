"""The benchmarks' own machinery, on small guests: what they time is the
work they name (no speed is asserted here -- speed targets live in
``benchmarks/``).  ``benchmarks/run.py`` times the VMM's handler around the
monitor's entry points; a handler never reached would divide by zero."""

from __future__ import annotations

import importlib.util
import pathlib
import types

from emu import programs
from emu.system import Config

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_handler_rate_times_every_exit_the_vmm_handles():
    run = _load("run")
    demand = str(programs.resolve("demand"))
    rate, hidden = run.handler_rate(demand, Config(mode="shadow"), 1)
    assert hidden > 0 and rate > 0


def test_the_guest_benchmark_measures_every_mode_of_a_guest():
    guests = _load("guests")
    image = guests.load("syscalls")
    config = guests.guest_config("syscalls")
    for label, changes in guests.modes(True):
        m = guests.measure(image, config.with_(**changes), 1, guests._clock(False))
        assert m["outcome"] == "poweroff" and m["instructions"] == 12_961
        assert (m["exits"] > 0) == (label != "native")


def test_short_runs_are_repeated_by_what_the_counted_runs_take(monkeypatch):
    """The first run translates the guest's code and is not counted: a
    guest whose first run takes 30 ms and every later one 7.8 ms is
    measured over seven runs (the first that add up to 50 ms), not one;
    never over more than ``MOST``; and over ``repeat`` runs at least."""
    guests = _load("guests")
    done = types.SimpleNamespace(vmm=None, cpu=types.SimpleNamespace(icount=7),
                                 outcome="poweroff")
    for first, later, runs in ((0.030, 0.0078125, 7), (0.001, 0.0001, guests.MOST),
                               (0.2, 0.1, 3)):
        taken = iter([first] + [later] * 1000)
        monkeypatch.setattr(guests, "timed_run", lambda *a, taken=taken: (next(taken), done))
        m = guests.measure(None, None, 3 if runs == 3 else 1, None)
        assert 1001 - sum(1 for _ in taken) == runs + 1
        assert m["seconds"] == later and m["instructions"] == 7


def test_a_guests_modes_are_measured_in_rounds(monkeypatch):
    """One run of each mode in turn, after one uncounted run of each: a
    slower spell falls on every mode alike.  The rounds go on until every
    mode has run ``SHORT`` seconds (the fastest decides)."""
    guests = _load("guests")
    done = types.SimpleNamespace(vmm=None, cpu=types.SimpleNamespace(icount=7),
                                 outcome="poweroff")
    took = {"native": 0.02, "shadow": 0.03}
    order = []

    def run(image, config, clock):
        order.append(config)
        return took[config], done
    monkeypatch.setattr(guests, "timed_run", run)
    m = guests.measure_rounds([("n", None, "native"), ("s", None, "shadow")], 1, None)
    assert order == ["native", "shadow"] * 4      # 1 uncounted, then 3 rounds (60 ms)
    assert (m["n"]["seconds"], m["s"]["seconds"]) == (0.02, 0.03)


def test_the_loop_joins_the_first_rounds_only(monkeypatch):
    """The compute loop (a long run) is timed in the first ``repeat``
    rounds of a guest, between its modes' runs, and no more."""
    guests = _load("guests")
    done = types.SimpleNamespace(vmm=None, cpu=types.SimpleNamespace(icount=7),
                                 outcome="poweroff")
    order = []

    def run(image, config, clock):
        order.append(config)
        return {"native": 0.015625, "loop": 0.5}[config], done
    monkeypatch.setattr(guests, "timed_run", run)
    m = guests.measure_rounds([("n", None, "native")], 2, None,
                              reference=("loop", None, "loop"))
    assert order == ["native"] + ["native", "loop"] * 2 + ["native"] * 2   # 4 x 15.6 ms
    assert (m["n"]["seconds"], m["loop"]["seconds"]) == (0.015625, 0.5)
