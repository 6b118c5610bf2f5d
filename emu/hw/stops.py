"""What the CPU hands to the world outside it: why a batch stopped, and the
fixed facts of the machine's protected mode (selectors, intercepts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .exceptions import DE, GP, NP

KERNEL_CS, USER_CS, USER_SS = 0x08, 0x1B, 0x23
CR0_PE, CR0_WP, CR0_PG = 1, 1 << 16, 1 << 31
CR4_PSE, CR4_PGE = 1 << 4, 1 << 7
CONTRIBUTORY = frozenset({DE, 10, NP, 12, GP})   # x86's contributory exceptions

# Every intercept a VMM may ask for (VMX-style exit controls).
INTERCEPTS = frozenset({"pf", "cr3_read", "cr3_write", "cr0_write", "cr4_write",
                        "invlpg", "hlt", "io"})


@dataclass
class Stop:
    """Why ``Cpu.run`` returned, and what it did before."""

    reason: str           # budget | halt | io | exit | shutdown | crash
    insns: int = 0        # instructions retired in this batch
    cycles: int = 0       # cycles they took (walks and deliveries included)
    detail: dict = field(default_factory=dict)


class StopRun(Exception):
    """Raised inside a batch to end it (hlt, I/O, an exit ...)."""

    def __init__(self, reason: str, retired: int, **detail):
        self.reason = reason
        self.retired = retired
        self.detail = detail

