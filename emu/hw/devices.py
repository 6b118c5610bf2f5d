"""Devices on the I/O ports: console, timer, power-off.

    port 0xE9  console   out: the low byte is a character (in: 0)
    port 0xF4  power     out: power off; the value is the exit status
    port 0x40  timer     out: period in clock units (0 stops it); in: the period
    port 0x41  timer     in: ticks delivered so far

The timer raises the interrupt line of vector 32.  Its clock is the vCPU's
retired-instruction count by default (like a performance-counter overflow
interrupt: it lands on the same instruction whatever the VMM does
underneath), or simulated cycles with ``--clock cycles``.  Devices do not
know simpy: the system layer calls them at exact instruction boundaries and
asks them for their next deadline.

Other ports read as all ones and ignore writes, as on a PC bus.
"""

from __future__ import annotations

CONSOLE_PORT = 0xE9
POWER_PORT = 0xF4
TIMER_PERIOD_PORT = 0x40
TIMER_TICKS_PORT = 0x41


class PowerOff(Exception):
    """The guest wrote the power-off port."""

    def __init__(self, status: int):
        self.status = status
        super().__init__(f"power off, status {status}")


class Console:
    """Guest console output, streamed to ``sink`` as it is written."""

    STATS = {"bytes": "bytes written to the console"}

    def __init__(self, sink=None):
        self.out = bytearray()
        self.sink = sink

    def write(self, value: int) -> None:
        b = value & 0xFF
        self.out.append(b)
        if self.sink is not None:
            self.sink(chr(b))

    def text(self) -> str:
        return self.out.decode("latin-1")

    def stats(self) -> dict:
        return {"bytes": len(self.out)}


class Timer:
    """A periodic timer: ``deadline`` in its clock's units, or None."""

    STATS = {"ticks": "timer interrupts raised", "period": "last period programmed"}

    def __init__(self, clock: str):
        if clock not in ("instructions", "cycles"):
            raise ValueError("clock must be 'instructions' or 'cycles'")
        self.clock = clock
        self.period = 0
        self.deadline: int | None = None
        self.ticks = 0

    def program(self, period: int, now: int) -> None:
        self.period = period & 0xFFFFFFFF
        self.deadline = now + self.period if self.period else None

    def due(self, now: int) -> bool:
        return self.deadline is not None and now >= self.deadline

    def fire(self) -> None:
        """One tick: the caller raises the interrupt line."""
        self.ticks += 1
        self.deadline += self.period

    def stats(self) -> dict:
        return {"ticks": self.ticks, "period": self.period, "clock": self.clock}


class IoBus:
    """Routes port accesses to the devices; ``now`` gives each clock's time."""

    def __init__(self, console: Console, timer: Timer):
        self.console = console
        self.timer = timer
        self.reads = 0
        self.writes = 0

    def write(self, port: int, value: int, now: int) -> None:
        self.writes += 1
        if port == CONSOLE_PORT:
            self.console.write(value)
        elif port == POWER_PORT:
            raise PowerOff(value)
        elif port == TIMER_PERIOD_PORT:
            self.timer.program(value, now)

    def write_console(self, value: int) -> None:
        """``write(CONSOLE_PORT, value, now)``, which needs no clock."""
        self.writes += 1
        console = self.console              # (Console.write, inline: every character)
        b = value & 0xFF
        console.out.append(b)
        if console.sink is not None:
            console.sink(chr(b))

    def read(self, port: int) -> int:
        self.reads += 1
        if port == CONSOLE_PORT:
            return 0
        if port == TIMER_PERIOD_PORT:
            return self.timer.period
        if port == TIMER_TICKS_PORT:
            return self.timer.ticks & 0xFFFFFFFF
        return 0xFFFFFFFF

    def stats(self) -> dict:
        return {"port_reads": self.reads, "port_writes": self.writes}
