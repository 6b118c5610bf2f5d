"""Several VMs on one machine: one simpy environment, one host (machine
memory, swap disk, sharing), one vCPU process per VM.

Each VM keeps its own CPU, TLBs, PMap, shadow or nested tables, devices and
console; the host takes machine pages back from whichever VM the CLOCK hand
finds idle, and shares identical pages across VMs.  The consoles are kept
apart: each output line is prefixed with its VM's name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import ConfigError
from .simenv import Environment
from .system import Config, Result, System
from .vmm.host import Host

DEFAULT_SHARE_INTERVAL = 200_000     # cycles between sharing scans with several VMs


class LinePrefixer:
    """A console sink that writes whole lines, each prefixed ``[name] ``."""

    def __init__(self, name: str, write):
        self.name = name
        self.write = write
        self.line = []

    def __call__(self, ch: str) -> None:
        self.line.append(ch)
        if ch == "\n":
            self.flush()

    def flush(self) -> None:
        if self.line:
            text = "".join(self.line)
            if not text.endswith("\n"):
                text += "\n"
            self.write(f"[{self.name}] {text}")
            self.line = []


@dataclass
class MultiResult:
    """The result of every VM, and the host's counters."""

    results: list[tuple[str, Result]]
    host: dict
    cycles: int
    host_seconds: float
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"vms": [{"name": n, **r.to_json()} for n, r in self.results],
                "host": self.host, "cycles": self.cycles,
                "host_seconds": round(self.host_seconds, 6)}


def vm_names(programs: list[str]) -> list[str]:
    """Short distinct names: the file stems, numbered when repeated."""
    import os
    stems = [os.path.splitext(os.path.basename(p))[0] for p in programs]
    names, seen = [], {}
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if stems.count(stem) == 1 else f"{stem}#{seen[stem]}")
    return names


def build(images: list, names: list[str], config: Config, write=None):
    """The host and one System per image (not started)."""
    if config.mode == "native":
        raise ConfigError("several programs share a machine only under a VMM "
                          "(--mode shadow or --mode nested)")
    env = Environment()
    share = config.share_interval
    host = Host(env, config.machine_bytes, reserve=config.reserve_pages,
                swap_latency=config.swap_latency, swap_bandwidth=config.swap_bandwidth,
                share_interval=share)
    if config.check_invariants:
        from .vmm.host_invariants import check_host
        host.check = check_host
    systems = []
    for image, name in zip(images, names):
        sink = LinePrefixer(name, write) if write is not None else None
        systems.append(System(image, config, console_sink=sink, host=host, name=name))
    return host, systems


def run_many(images: list, names: list[str], config: Config, write=None,
             trace=None) -> MultiResult:
    """Run every image on one machine until all of them end; ``trace``: a
    file every VM's trace events go to as JSON lines, each naming its VM."""
    host, systems = build(images, names, config, write)
    if trace is not None:
        from .trace import JsonlWriter
        for s in systems:
            s.bus.subscribe(JsonlWriter(trace, s.name))
    t0 = time.perf_counter()
    host.start()
    processes = [s.start() for s in systems]
    host.env.run(until=host.env.all_of(processes))
    elapsed = time.perf_counter() - t0
    for s in systems:
        sink = s.console.sink
        if sink is not None:
            sink.flush()
        s.host_seconds = elapsed
    return MultiResult([(s.name, s.result()) for s in systems], host.stats(),
                       int(host.env.now), elapsed)
