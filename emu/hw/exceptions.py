"""Architectural exceptions: what the hardware raises while executing.

A ``GuestFault`` is not an error of the emulator: it is an x86 exception on
its way to the guest's IDT (or, when the VMM intercepts it, to the VMM).  The
CPU catches it in exactly one place, its dispatcher.
"""

from __future__ import annotations

DE = 0    # divide error
UD = 6    # invalid opcode
DF = 8    # double fault
NP = 11   # segment (gate) not present
GP = 13   # general protection
PF = 14   # page fault
TIMER_VECTOR = 32
NPF = 256  # not an x86 vector: an EPT violation (nested paging), always a VM exit
HPF = 257  # not an x86 vector: a TLB entry whose page the host took, always a VM exit

NAMES = {DE: "#DE divide error", UD: "#UD invalid opcode", DF: "#DF double fault",
         NP: "#NP not present", GP: "#GP general protection", PF: "#PF page fault",
         NPF: "EPT violation", HPF: "host page taken"}

# Vectors that push an error code (x86: 8, 10-14, 17).
HAS_ERROR_CODE = frozenset({DF, 10, NP, 12, GP, PF, 17})


class CodeWritten(Exception):
    """Raised by a translated block after an instruction whose store made
    translated code stale (``Mmu.code_gone``): the rest of the block may be
    code that is no longer there, so the CPU goes on from the next
    instruction, translated anew -- as x86 (P6 and later) sees a store to
    an instruction it has already fetched (Intel SDM vol. 3A, 11.6).
    ``cpu.partial`` holds how many of the block's instructions retired."""


class BudgetEnd(CodeWritten):
    """Raised by a block that holds an out to the console (``translate``)
    where the batch's cycle budget runs out between its pieces: the batch
    ends there, as it would have between separate blocks.  ``cpu.partial``
    holds how many of the block's instructions retired."""


class GuestFault(Exception):
    """An exception raised by the guest's instruction stream."""

    __slots__ = ("vector", "error_code", "cr2")

    def __init__(self, vector: int, error_code: int | None = None,
                 cr2: int | None = None):
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2

    def __str__(self) -> str:
        s = NAMES.get(self.vector, f"vector {self.vector}")
        if self.error_code is not None:
            s += f" error code {self.error_code:#x}"
        if self.cr2 is not None:
            s += f" at va {self.cr2:#010x}"
        return s


def page_fault(va: int, error_code: int) -> GuestFault:
    return GuestFault(PF, error_code, va & 0xFFFFFFFF)


def gp(error_code: int = 0) -> GuestFault:
    return GuestFault(GP, error_code)


def describe_vector(vector: int) -> str:
    if vector in NAMES:
        return NAMES[vector]
    if vector == TIMER_VECTOR:
        return "timer interrupt"
    return f"int {vector:#x}"
