"""VM exits: what the hardware hands the VMM when an intercepted event
happens, one frozen record per kind (as VMX's exit reason and
qualification).

The CPU makes them (``Cpu._exit``); the VMM receives them, typed: a
handler is chosen by the record's class, never by a string.  ``reason``
names the exit in statistics and the trace (``vm_exit``'s ``reason``).

Every exit carries the eip of the instruction that caused it and
``vectoring``: the event the CPU was delivering when it happened (an
exception or interrupt whose delivery took a #PF), which the CPU delivers
again when the guest resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from .paging import Walk


@dataclass(frozen=True, slots=True)
class VmExit:
    """Any VM exit."""

    reason: ClassVar[str] = "exit"
    eip: int                       # the instruction that caused it
    vectoring: tuple | None        # an event whose delivery it interrupted


@dataclass(frozen=True, slots=True)
class PageFaultExit(VmExit):
    """A #PF the VMM intercepts (shadow paging): step 1 of the six is done,
    the hardware's walk of the shadow table found nothing that allows the
    access (``walk``: that walk's record, when it was this access's)."""

    reason: ClassVar[str] = "pf"
    va: int
    error_code: int                # the #PF error code the hardware computed
    walk: Walk | None = None       # the shadow walk that faulted (step 1)

    @property
    def write(self) -> bool:
        return bool(self.error_code & 2)

    @property
    def user(self) -> bool:
        return bool(self.error_code & 4)

    @property
    def fetch(self) -> bool:
        return bool(self.walk is not None and self.walk.fetch)

    @property
    def present(self) -> bool:
        """The shadow entry was there but refused the access (P=1)."""
        return bool(self.error_code & 1)


@dataclass(frozen=True, slots=True)
class EptViolationExit(VmExit):
    """Nested paging: the 2D walk found no nested entry (or a read-only one
    for a write) for guest-physical ``gpa``."""

    reason: ClassVar[str] = "npf"
    va: int
    gpa: int
    error_code: int
    grid: tuple = ()               # the 2D walk's references, for the trace

    @property
    def write(self) -> bool:
        return bool(self.error_code & 2)


@dataclass(frozen=True, slots=True)
class HostPageExit(VmExit):
    """An access through a TLB entry whose page the host took (reclaim,
    sharing): the guest's TLB still holds the translation, so the monitor
    brings the page back and the entry translates to it again -- no walk,
    no A/D bit, as the hit it is natively (``Mmu.detach_pn``)."""

    reason: ClassVar[str] = "host_page"
    va: int
    error_code: int                # as a #PF's: 2 write, 4 user, 16 fetch

    @property
    def write(self) -> bool:
        return bool(self.error_code & 2)


@dataclass(frozen=True, slots=True)
class CrWriteExit(VmExit):
    """A MOV to CR0, CR3 or CR4."""

    cr: int
    value: int
    next_eip: int

    @property
    def reason(self) -> str:       # cr0_write, cr3_write, cr4_write
        return f"cr{self.cr}_write"


@dataclass(frozen=True, slots=True)
class CrReadExit(VmExit):
    """A MOV from CR3 into register ``reg``."""

    reason: ClassVar[str] = "cr3_read"
    reg: int
    next_eip: int


@dataclass(frozen=True, slots=True)
class InvlpgExit(VmExit):
    """An INVLPG of ``va``."""

    reason: ClassVar[str] = "invlpg"
    va: int
    next_eip: int


@dataclass(frozen=True, slots=True)
class IoExit(VmExit):
    """An IN (``value`` None, the result goes to register ``reg``) or an OUT."""

    reason: ClassVar[str] = "io"
    port: int
    value: int | None
    reg: int | None
    next_eip: int


@dataclass(frozen=True, slots=True)
class HaltExit(VmExit):
    """A HLT."""

    reason: ClassVar[str] = "hlt"
    next_eip: int


def _maker(cls):
    """A function that makes a ``cls`` from every field, in order, faster
    than the frozen dataclass's ``__init__`` (which sets each field through
    ``object.__setattr__``): the CPU makes one on every exit."""
    names = [f.name for f in fields(cls)]
    env = {"new": object.__new__, "cls": cls}
    env.update({f"set_{n}": getattr(cls, n).__set__ for n in names})
    body = "".join(f"    set_{n}(e, {n})\n" for n in names)
    exec(f"def make({', '.join(names)}):\n    e = new(cls)\n{body}    return e\n", env)
    return env["make"]


make_page_fault_exit = _maker(PageFaultExit)
make_ept_violation_exit = _maker(EptViolationExit)
make_io_exit = _maker(IoExit)
make_host_page_exit = _maker(HostPageExit)
make_halt_exit = _maker(HaltExit)
make_invlpg_exit = _maker(InvlpgExit)
make_cr_read_exit = _maker(CrReadExit)
make_cr_write_exit = _maker(CrWriteExit)

__all__ = ["CrReadExit", "CrWriteExit", "EptViolationExit", "HaltExit", "HostPageExit",
           "InvlpgExit", "IoExit", "PageFaultExit", "VmExit"]
