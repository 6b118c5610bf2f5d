"""Access watchpoints: the guest's reads and writes of watched va ranges.

What counts is what a debug register would see: the loads and stores of the
guest's instructions (the translated blocks' hit and slow paths) and the
CPU's own accesses on the guest's behalf (the frame an exception pushes,
``iret``'s pops, string instructions).  The hardware walker's A/D updates
and the VMM's work are not guest accesses (``last-write`` finds those).

The watch wraps the MMU's four access functions (``rd32 wr32 rd8 wr8``, the
globals every translated block calls, in both of the MMU's hit paths) and
its ``read``/``write`` methods, only while it is installed: a run without
watchpoints runs the MMU's own functions.  An access counts once it is
done: one that faults (a #PF, a VM exit for a hidden fault) is no hit, as a
debug register does not fire for it; the instruction's retry is.  Hits are
kept in ``hits`` until the driver takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("write", "read", "access")
ACCESS_FUNCTIONS = {"rd32": (4, False), "wr32": (4, True), "rd8": (1, False),
                    "wr8": (1, True)}


@dataclass(frozen=True)
class Watch:
    va: int
    length: int
    kind: str          # write | read | access

    def sees(self, va: int, size: int, write: bool) -> bool:
        if self.kind == "write" and not write or self.kind == "read" and write:
            return False
        return va < self.va + self.length and self.va < va + size


@dataclass(frozen=True)
class Hit:
    watch: Watch
    va: int            # the access's first byte
    size: int
    write: bool


class AccessWatch:
    """Watchpoints on guest-virtual ranges (see the module doc)."""

    def __init__(self):
        self.watches: list[Watch] = []
        self.hits: list[Hit] = []
        self._vpns: set[int] = set()
        self._mmu = None
        self._saved: dict = {}

    def __bool__(self) -> bool:
        return bool(self.watches)

    def add(self, va: int, length: int, kind: str) -> Watch:
        if kind not in KINDS or length < 1:
            raise ValueError(f"bad watchpoint {kind} {length}")
        w = Watch(va & 0xFFFFFFFF, length, kind)
        self.watches.append(w)
        self._pages()
        return w

    def remove(self, va: int, length: int, kind: str) -> bool:
        w = Watch(va & 0xFFFFFFFF, length, kind)
        if w in self.watches:
            self.watches.remove(w)
            self._pages()
            return True
        return False

    def _pages(self) -> None:
        self._vpns = {vpn for w in self.watches
                      for vpn in range(w.va >> 12, ((w.va + w.length - 1) >> 12) + 1)}

    def _check(self, va: int, size: int, write: bool) -> None:
        va &= 0xFFFFFFFF
        for w in self.watches:
            if w.sees(va, size, write):
                self.hits.append(Hit(w, va, size, write))

    # --- installing --------------------------------------------------------------------
    def install(self, mmu) -> None:
        """Watch the accesses ``mmu`` makes (idempotent)."""
        if self._mmu is mmu:
            return
        self.uninstall()
        vpns = self._vpns
        check = self._check
        saved = {}
        for key, paths in mmu._paths.items():
            saved[("paths", key)] = dict(paths)
            for name, (size, write) in ACCESS_FUNCTIONS.items():
                paths[name] = _wrapped(paths[name], size, write, vpns, check, self)
        for name in ACCESS_FUNCTIONS:
            saved[("env", name)] = mmu.env[name]
            saved[("attr", name)] = getattr(mmu, name)
        mmu._bind_hit_path()
        read, write = mmu.read, mmu.write

        def slow_read(va, size, counted=True, fetch=False):
            out = read(va, size, counted, fetch)
            if not fetch and self._vpns and ((va >> 12) in self._vpns
                                             or ((va + size - 1) >> 12) in self._vpns):
                check(va, size, False)
            return out

        def slow_write(va, size, value, counted=True):
            out = write(va, size, value, counted)
            if self._vpns and ((va >> 12) in self._vpns or ((va + size - 1) >> 12) in self._vpns):
                check(va, size, True)
            return out
        mmu.read, mmu.write = slow_read, slow_write
        self._mmu = mmu
        self._saved = saved

    def uninstall(self) -> None:
        mmu = self._mmu
        if mmu is None:
            return
        for key in list(mmu._paths):
            mmu._paths[key].clear()
            mmu._paths[key].update(self._saved[("paths", key)])
        mmu._bind_hit_path()
        del mmu.read, mmu.write            # the class's methods again
        self._mmu = None
        self._saved = {}


def _wrapped(fn, size: int, write: bool, vpns: set, check, watch):
    if write:
        def access(va, value):
            out = fn(va, value)
            if watch._vpns and ((va >> 12) in watch._vpns
                                or ((va + size - 1) >> 12) in watch._vpns):
                check(va, size, True)
            return out
    else:
        def access(va):
            out = fn(va)
            if watch._vpns and ((va >> 12) in watch._vpns
                                or ((va + size - 1) >> 12) in watch._vpns):
                check(va, size, False)
            return out
    access.__name__ = getattr(fn, "__name__", "access")
    return access
