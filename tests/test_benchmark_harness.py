"""The benchmarks' own machinery, on small guests: what they time is the
work they name (no speed is asserted here -- speed targets live in
``benchmarks/``).  ``benchmarks/run.py`` times the VMM's handler around the
monitor's entry points; a handler never reached would divide by zero."""

from __future__ import annotations

import importlib.util
import pathlib

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
