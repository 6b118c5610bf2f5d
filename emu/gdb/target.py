"""The debugged machine, as GDB sees it: registers, memory, breakpoints,
watchpoints, stepping forward and back.

It drives a ``Session`` (the stepper's engine), so every stop is a place
the session can come back to: reverse execution restores a snapshot and
replays (``ui/reverse.py``).  Addresses are guest-virtual, translated by the
guest's own page tables as they are now (with paging off, va = pa);
nothing GDB reads changes the run.  A write (``M``, ``G``, ``P``) changes the
machine, so the history before it is no longer its past: reverse execution
stops there (``Session.rebase``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ..errors import EmuError
from ..ui.probe import Probe
from .tdesc import REGISTERS

SEL_KERNEL_CS, SEL_KERNEL_DS = 0x08, 0x10
SEL_USER_CS, SEL_USER_DS = 0x1B, 0x23
SIGTRAP, SIGINT, SIGSEGV, SIGXCPU = 5, 2, 11, 24


@dataclass(frozen=True)
class StopReply:
    """Why the machine stopped, as a stop-reply packet says it."""

    signal: int = SIGTRAP
    reason: str = ""           # swbreak | watch | rwatch | awatch | replaylog
    value: str = ""            # the watched address, or begin | end
    exited: int | None = None  # the guest powered off with this status
    killed: int | None = None  # the run ended another way: this signal
    message: str = ""

    def packet(self, eip: int) -> str:
        if self.exited is not None:
            return f"W{self.exited & 0xFF:02x}"
        if self.killed is not None:
            return f"X{self.killed:02x}"
        out = f"T{self.signal:02x}08:{struct.pack('<I', eip).hex()};thread:1;"
        if self.reason:
            out += f"{self.reason}:{self.value};"
        return out


class Target:
    """One guest run under GDB (see the module doc)."""

    def __init__(self, session):
        self.session = session
        self.breakpoints: dict[int, object] = {}     # va -> the session's breakpoint
        self.last = StopReply()

    @property
    def system(self):
        return self.session.system

    # --- registers --------------------------------------------------------------------
    def register_values(self) -> list[bytes]:
        cpu = self.system.cpu
        user = cpu.cpl == 3
        values = {f"{n}": v for n, v in cpu.registers().items()}
        values.update(cs=SEL_USER_CS if user else SEL_KERNEL_CS)
        for seg in ("ss", "ds", "es", "fs", "gs"):
            values[seg] = SEL_USER_DS if user else SEL_KERNEL_DS
        out = []
        for name, size, _ in REGISTERS:
            v = values.get(name, 0)
            out.append((v & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
        return out

    WRITABLE = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags")

    def write_registers(self, changes: list[tuple[int, bytes]]) -> None:
        """Write several registers, or none: every one is checked first (a
        refused one leaves the machine and its history as they were)."""
        values = self.register_values()
        for index, data in changes:
            name, size, _ = REGISTERS[index]
            if len(data) != size:
                raise EmuError(f"register {name} takes {size} bytes")
            if name not in self.WRITABLE and values[index] != data:
                raise EmuError(f"{name} cannot be written from the debugger")
        for index, data in changes:
            self.write_register(index, data)

    def write_register(self, index: int, data: bytes) -> None:
        if not 0 <= index < len(REGISTERS):
            raise EmuError(f"no register {index}")
        name, size, _ = REGISTERS[index]
        if len(data) != size:
            raise EmuError(f"register {name} takes {size} bytes")
        value = int.from_bytes(data, "little")
        cpu = self.system.cpu
        names = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
        if name in names:
            if cpu.r[names.index(name)] == value:
                return
            self.session.rebase()
            cpu.r[names.index(name)] = value
        elif name == "eip":
            if cpu.eip == value:
                return
            self.session.rebase()
            cpu.eip = value
        elif name == "eflags":
            if cpu.eflags == value:
                return
            self.session.rebase()
            cpu.set_eflags(value)
        elif self.register_values()[index] != data:
            raise EmuError(f"{name} cannot be written from the debugger")

    # --- memory -----------------------------------------------------------------------
    def read_memory(self, va: int, n: int) -> bytes | None:
        """``n`` bytes at ``va`` through the guest's tables; None where unmapped
        (or past the 4 GiB address space: never cut to 32 bits)."""
        if va > 0xFFFFFFFF:
            return None
        return Probe(self.system).read_va(va, n)

    def write_memory(self, va: int, data: bytes) -> bool:
        if va > 0xFFFFFFFF:
            return False
        p = Probe(self.system)
        spans = []
        pos = 0
        while pos < len(data):
            chunk = min(len(data) - pos, 4096 - ((va + pos) & 0xFFF))
            pa = p.va_to_pa((va + pos) & 0xFFFFFFFF)
            if pa is None or pa + chunk > self.system.guest.size:
                return False
            spans.append((pa, data[pos:pos + chunk]))
            pos += chunk
        if all(p.read_pa(pa, len(d)) == d for pa, d in spans):
            return True
        self.session.rebase()
        s = self.system
        for pa, d in spans:
            s.guest_write(pa, d)
            if s.vmm is None:
                s.mmu.code_written(pa >> 12)   # translated code of that page is stale
        return True

    # --- breakpoints and watchpoints ------------------------------------------------------
    def insert(self, kind: int, va: int, length: int) -> bool:
        if va > 0xFFFFFFFF:
            return False
        if kind in (0, 1):
            if va not in self.breakpoints:
                self.breakpoints[va] = self.session.add_breakpoint("addr", va, f"{va:#x}")
            return True
        watch = {2: "write", 3: "read", 4: "access"}.get(kind)
        if watch is None or va + max(1, length) > 1 << 32:
            return False                # (a range past 4 GiB: no address is there)
        self.session.watch.add(va, max(1, length), watch)
        return True

    def remove(self, kind: int, va: int, length: int) -> bool:
        if va > 0xFFFFFFFF:
            return False
        if kind in (0, 1):
            bp = self.breakpoints.pop(va, None)
            if bp is not None:
                self.session.delete_breakpoint(bp.number)
            return True
        watch = {2: "write", 3: "read", 4: "access"}.get(kind)
        return watch is not None and self.session.watch.remove(va, max(1, length), watch)

    # --- running ----------------------------------------------------------------------------
    def _stopped(self, why: str | None, *, reverse: bool = False) -> StopReply:
        s = self.session
        if s.finished:
            sys_ = s.system
            if sys_.outcome == "poweroff":
                reply = StopReply(exited=sys_.exit_status or 0, message=sys_.message)
            else:
                reply = StopReply(killed=SIGSEGV if sys_.outcome == "crash" else SIGXCPU,
                                  message=sys_.message)
        elif why == "interrupted" or _gave_up(why):
            reply = StopReply(SIGINT)
        elif why == "watchpoint":
            hits = s.watch.hits
            h = hits[-1] if hits else None
            kind = {"write": "watch", "read": "rwatch", "access": "awatch"}[h.watch.kind] \
                if h else "watch"
            reply = StopReply(reason=kind, value=f"{h.watch.va if h else 0:x}")
        elif why and why.startswith("breakpoint"):
            reply = StopReply(reason="swbreak")
        elif reverse and why and "start of the history" in why:
            reply = StopReply(reason="replaylog", value="begin")
        else:
            reply = StopReply()
        self.last = reply
        return reply

    def step(self) -> StopReply:
        if self.session.finished:
            return self._stopped(None)
        self.session.stepi()
        msg = self.session.message
        return self._stopped("watchpoint" if msg == "watchpoint" else None)

    def cont(self) -> StopReply:
        if self.session.finished:
            return self._stopped(None)
        self.session.cont()
        msg = self.session.message
        if msg.startswith("breakpoint"):
            # Stopped before the instruction at a breakpoint.
            return self._stopped("breakpoint")
        return self._stopped(msg if msg in ("watchpoint", "interrupted") else None)

    def reverse_step(self) -> StopReply:
        return self._stopped(self.session.reverse_step(), reverse=True)

    def reverse_continue(self) -> StopReply:
        s = self.session
        if s.watch:
            # Going backwards, GDB stops before the access, as its own
            # record target does (the watched value is the one before it):
            # first the instruction just before here, which the search
            # below does not look at (it ends here).
            msg = s.reverse_step()
            if _gave_up(msg) or "at the start of the history" in msg:
                return self._stopped(msg, reverse=True)
            s.stepi()
            if s.message == "watchpoint":
                h = s.watch.hits[-1] if s.watch.hits else None
                s.reverse_step()
                return self._stopped_watch_back(
                    f"watchpoint: {'write' if h and h.write else 'read'} of "
                    f"va {h.va if h else 0:#010x}")
        msg = s.reverse_continue() if (s.breakpoints or s.watch) else \
            s._reverse("reverse-continue", None, "at the start of the history")
        if "at the start of the history" in msg:
            return self._stopped(msg, reverse=True)
        if "watchpoint" in msg:
            s.reverse_step()            # before the access (see above)
            return self._stopped_watch_back(msg)
        if "breakpoint" in msg:
            return self._stopped("breakpoint")
        return self._stopped(msg, reverse=True)

    def _stopped_watch_back(self, msg: str) -> StopReply:
        m = re.search(r"watchpoint: (write|read) of va 0x([0-9a-f]+)", msg)
        va = int(m.group(2), 16) if m else 0
        write = m is not None and m.group(1) == "write"
        ws = [w for w in self.session.watch.watches if w.sees(va, 4, write)] or \
            self.session.watch.watches
        w = ws[0] if ws else None
        kind = {"write": "watch", "read": "rwatch", "access": "awatch"}[w.kind] \
            if w else "watch"
        self.last = StopReply(reason=kind, value=f"{w.va if w else va:x}")
        return self.last


def _gave_up(msg: str | None) -> bool:
    """Did ^C stop the session's search (``reverse-continue: interrupted
    (still where it began); ...``)?"""
    return bool(msg) and msg.partition(": ")[2].startswith("interrupted")


__all__ = ["StopReply", "Target"]
