"""Breakpoints: where ``continue`` (and ``step``, ``next``) stop.

    addr    an address (a symbol): stop before the instruction there
    fault   a fault kind the VMM counts (hidden, true, tracing, nested ...),
            or an exception the hardware delivers (pf, gp, ud ...)
    exit    a VM exit reason (pf, npf, cr3_write, invlpg, io, hlt ...)
    write   a va: stop after an instruction changes the dword there

Faults and exits are trace events: the session stops at the event, inside
the VMM's handling if that is where it happened.  Addresses and writes are
checked between instructions.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EmuError
from ..hw.exceptions import NAMES as VECTOR_NAMES

# Exception names a fault breakpoint takes (the hardware delivers them).
EXCEPTIONS = {name.split()[0][1:].lower(): vector for vector, name in VECTOR_NAMES.items()
              if name.startswith("#")}


@dataclass
class Breakpoint:
    """Where ``continue`` (and ``step``, ``next``) stop."""

    number: int
    kind: str          # addr | fault | exit | write
    value: object      # an address (addr, write), a fault kind or an exit reason
    text: str          # as the user gave it
    hits: int = 0

    @property
    def mid_batch(self) -> bool:
        """Raised in the middle of a CPU batch (an exception delivered by
        the hardware), so the session must find it instruction by instruction."""
        return self.kind == "fault" and self.value in EXCEPTIONS

    def describe(self) -> str:
        what = {"addr": "at", "fault": "on fault", "exit": "on VM exit",
                "write": "on a write to va"}[self.kind]
        if self.kind in ("addr", "write"):
            shown = f"{self.value:#010x}"
            if self.text != shown and not self.text.startswith("0x"):
                shown += f" ({self.text})"
            return f"{what} {shown}"
        return f"{what} {self.value}"



def fault_kinds(system) -> list[str]:
    vmm = system.vmm
    kinds = list(getattr(vmm, "faults", {})) if vmm is not None else []
    return kinds + sorted(EXCEPTIONS)


def exit_reasons(system) -> list[str]:
    vmm = system.vmm
    if vmm is None:
        return []
    return sorted(set(system.cpu.intercepts) | {vmm.FAULT_EXIT.reason})


class Breakpoints:
    """The breakpoints of a session, numbered from 1."""

    def __init__(self):
        self.items: list[Breakpoint] = []
        self.number = 0

    def add(self, system, kind: str, value, text: str) -> Breakpoint:
        mode = system.config.mode
        if kind == "fault" and value not in fault_kinds(system):
            raise EmuError(f"no fault kind '{value}' in {mode} mode "
                           f"(one of: {', '.join(fault_kinds(system))})")
        if kind == "exit":
            if system.vmm is None:
                raise EmuError("there are no VM exits natively: no VMM runs")
            if value not in exit_reasons(system):
                raise EmuError(f"no exit reason '{value}' in {mode} mode "
                               f"(one of: {', '.join(exit_reasons(system))})")
        self.number += 1
        bp = Breakpoint(self.number, kind, value, text)
        self.items.append(bp)
        return bp

    def delete(self, number: int | None) -> int:
        """Delete breakpoint ``number`` (None: all); returns how many went."""
        before = len(self.items)
        self.items = [bp for bp in self.items if number is not None and bp.number != number]
        gone = before - len(self.items)
        if not gone and number is not None:
            raise EmuError(f"no breakpoint {number}")
        return gone


def event_hit(ev, event_bps, addrs, eip=None):
    """(why, breakpoint) if ``ev`` hits an event breakpoint, else (None, None).
    ``eip``, where the vCPU is now: at the handler a delivery entered (the
    VMM's injection, the vCPU held there), its first instruction has not run
    -- where the hardware delivers, the CPU ran it with the delivery."""
    kind, data = ev.kind, ev.data
    for bp in event_bps:
        if bp.kind == "exit":
            hit = kind == "vm_exit" and data.get("reason") == bp.value
        elif bp.value in EXCEPTIONS:
            hit = (kind == "deliver" and data.get("source") == "fault"
                   and data.get("vector") == EXCEPTIONS[bp.value])
        else:
            hit = kind == f"{bp.value}_fault"
        if hit:
            return f"breakpoint {bp.number} {bp.describe()}", bp
    if kind == "deliver" and data.get("handler") in addrs:
        bp = addrs[data["handler"]]
        ran = "" if eip == bp.value else "; the CPU ran the handler's first instruction with it"
        return f"breakpoint {bp.number} {bp.describe()} (entered by an event delivery{ran})", bp
    return None, None
