"""The host's swap disk, and the record of one guest page's transfer in
flight (``host.py`` does the swapping)."""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from ..hw.memory import PAGE_SIZE


class SwapDisk:
    """A simulated disk for swapped pages: one transfer at a time."""

    STATS = {"writes": "pages written (swap-outs)", "reads": "pages read (swap-ins)",
             "busy_cycles": "cycles the disk spent transferring",
             "sync_reads": "pages the VMM read back at once (guest table walks, loading)"}

    def __init__(self, env, latency: int, bandwidth: int):
        self.env = env
        self.resource = simpy.Resource(env, capacity=1)
        self.cost = latency + PAGE_SIZE // max(bandwidth, 1)
        self.store: dict[tuple, bytes] = {}      # swap slot -> its page
        self.writes = self.reads = self.sync_reads = 0
        self.busy_cycles = 0

    def transfer(self):
        """One page's transfer (a generator: the caller waits for the disk)."""
        with self.resource.request() as req:
            yield req
            yield self.env.timeout(self.cost)
        self.busy_cycles += self.cost

    def stats(self) -> dict:
        return {"writes": self.writes, "reads": self.reads, "sync_reads": self.sync_reads,
                "busy_cycles": self.busy_cycles, "cycles_per_page": self.cost,
                "pages_on_disk": len(self.store)}


@dataclass(eq=False)
class SwapIo:
    """A guest page's swap transfer in flight (``PMap.in_flight``)."""

    kind: str              # writing-out | reading-in (the page's state)
    ppn: int
    mpn: int
    key: tuple             # its swap slot
    done: simpy.Event      # succeeds when the transfer is over
    data: bytes = b""      # a write-out: what goes to the disk
    rescue: bool = False   # a write-out: a fault wants the page back
    settled: bool = False  # the VMM brought the page back synchronously
