"""Snapshots of a stopped machine's tables (guest, shadow) and the
differences between two: what an access changed.  Read through the
stepper's ``Probe`` and the hardware's own CR3, never through the VMM's
bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import guest_tables, shadow_tables


@dataclass(frozen=True)
class Tables:
    """Entries of the exercise's tables at one moment."""

    guest: dict          # pa of a guest table page -> {index: gpde/gpte}
    shadow: dict         # ma of a shadow table page -> {index: spde/spte}
    shadow_root: int     # ma of the shadow page directory (the hardware's CR3)
    guest_pd: int

    def names(self):
        """(address space, table page) -> entry name."""
        out = {("pa", pa): "gpde" if pa == self.guest_pd else "gpte" for pa in self.guest}
        for ma in self.shadow:
            out[("ma", ma)] = "spde" if ma == self.shadow_root else "spte"
        return out


def tables(system, layout, *, shadow: bool) -> Tables:
    guest = guest_tables(system, layout.pd, sorted(layout.tables))
    root, stables = shadow_tables(system) if shadow else (0, {})
    return Tables(guest, stables, root, layout.pd)


@dataclass(frozen=True, order=True)
class Change:
    """One table entry an access changed: its name, address space and
    address, and its values before and after."""

    space: str           # "pa" (a guest entry) or "ma" (a shadow entry)
    at: int
    name: str            # gpde, gpte, spde, spte
    old: int
    new: int

    def describe(self) -> str:
        return f"{self.name} at {self.space} {self.at:#010x}: {self.old:#010x} -> {self.new:#010x}"


def changes(before: Tables, after: Tables) -> list[Change]:
    """Every entry whose value differs, guest entries first, by address."""
    out = []
    names = {**before.names(), **after.names()}
    for space, b, a in (("pa", before.guest, after.guest), ("ma", before.shadow, after.shadow)):
        for page in sorted(set(b) | set(a)):
            old_t, new_t = b.get(page, {}), a.get(page, {})
            for idx in sorted(set(old_t) | set(new_t)):
                if idx == 0 and page in (before.guest_pd, before.shadow_root):
                    continue            # the quiz kernel's own entry (pdx 0)
                old, new = old_t.get(idx, 0), new_t.get(idx, 0)
                if old != new:
                    out.append(Change(space, page + 4 * idx, names[(space, page)], old, new))
    return out
