"""The simulation's clock and event queue: simpy's ``Environment``.

One change: ``peek`` (the time of the next event) answers "nothing is
due" without raising and catching an ``IndexError``.  Every batch of the
vCPU and every VM exit asks it two or three times, and a VM running alone
has nothing due most of the time: simpy's version made that question cost
more than the rest of an exit's bookkeeping.
"""

from __future__ import annotations

import simpy
from simpy.core import Infinity


class Environment(simpy.Environment):
    """simpy's environment with a ``peek`` that does not raise."""

    def peek(self):
        queue = self._queue
        return queue[0][0] if queue else Infinity


__all__ = ["Environment"]
