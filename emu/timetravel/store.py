"""The snapshots of one run, kept within a memory budget.

Snapshots are kept in the order they were taken.  Their pages are shared:
a page that did not change between two snapshots is one ``bytes`` object,
so the store's size is the pickles plus each distinct page once (and each
distinct large value the pickles share, such as swapped pages), plus what
the driver keeps with each snapshot (``Snapshot.extra_bytes``: the
stepper's recent trace events).  When the
size passes the budget, old snapshots are thinned out: every other one of
the older half goes (never the first, nor the newest ones), so the spacing
grows with age and going back far costs a longer replay, never a failure.
"""

from __future__ import annotations

from .snapshot import BIG_BYTES, Snapshot

DEFAULT_BUDGET = 256 << 20       # bytes of snapshot memory (pickles and pages)
KEEP_NEWEST = 8                   # the newest snapshots are never thinned out


class SnapshotStore:
    """Snapshots in time order, with shared pages and a budget."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        if budget <= 0:
            raise ValueError("the snapshot budget must be positive")
        self.budget = budget
        self.items: list[Snapshot] = []
        self._refs: dict[int, list] = {}      # id(shared bytes) -> [references, size]
        self.size = 0                          # bytes held (see the module doc)
        self.peak = 0
        self.taken = 0
        self.thinned = 0

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def last(self) -> Snapshot | None:
        return self.items[-1] if self.items else None

    # --- adding and dropping ---------------------------------------------------------
    def add(self, snap: Snapshot) -> None:
        self.items.append(snap)
        self.taken += 1
        self._count(snap, +1)
        self.peak = max(self.peak, self.size)
        while self.size > self.budget and self._thin():
            pass

    def _shared(self, snap: Snapshot):
        yield from snap.pages.values()
        for a in snap.atoms:
            if type(a) is bytes and len(a) >= BIG_BYTES:
                yield a

    def _count(self, snap: Snapshot, sign: int) -> None:
        self.size += sign * (len(snap.blob) + snap.extra_bytes)
        refs = self._refs
        for data in self._shared(snap):
            r = refs.get(id(data))
            if r is None:
                r = refs[id(data)] = [0, len(data), data]
                self.size += len(data)
            r[0] += sign
            if r[0] == 0:
                del refs[id(data)]
                self.size -= r[1]

    def _remove(self, i: int) -> None:
        snap = self.items.pop(i)
        self._count(snap, -1)
        if i < len(self.items):
            nxt = self.items[i]
            # What changed since the one before now counts from further back.
            object.__setattr__(nxt, "changed", nxt.changed | snap.changed)

    def _thin(self) -> bool:
        """Drop every other snapshot of the older half (never the first nor
        the newest ones); False if none can go."""
        n = len(self.items)
        hi = n - 1 - KEEP_NEWEST
        if hi < 2:
            hi = n - 1                 # few snapshots: any but the first and the newest
        candidates = list(range(1, hi))
        if not candidates:
            return False
        older = candidates[:max(1, (len(candidates) + 1) // 2)]
        for i in reversed(older[::2]):
            self._remove(i)
            self.thinned += 1
            if self.size <= self.budget:
                break
        return True

    def drop_after(self, keep) -> None:
        """Drop the snapshots ``keep(snapshot)`` refuses, from the newest
        down (a future that will not happen any more)."""
        n = len(self.items)
        while n and not keep(self.items[n - 1]):
            n -= 1
        if n == len(self.items):
            return
        if len(self.items) - n <= n:
            while len(self.items) > n:
                self._remove(len(self.items) - 1)
        else:                  # most of them go: count what stays afresh
            kept = self.items[:n]
            self.clear()
            for snap in kept:
                self.items.append(snap)
                self._count(snap, +1)

    def clear(self) -> None:
        self.items = []
        self._refs = {}
        self.size = 0

    # --- finding ---------------------------------------------------------------------
    def latest(self, ok) -> Snapshot | None:
        """The newest snapshot for which ``ok(snapshot)`` holds."""
        for snap in reversed(self.items):
            if ok(snap):
                return snap
        return None

    def stats(self) -> dict:
        return {"snapshots": len(self.items), "taken": self.taken, "thinned": self.thinned,
                "bytes": self.size, "peak_bytes": self.peak, "budget": self.budget,
                "pages": sum(1 for _ in self._refs)}
