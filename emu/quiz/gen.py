"""Helpers the generators share: random entry flags, where the exercise's
pages go, and the hardware walk of an access on a layout (the generators
use it to steer towards a case; the answers come from the runs).
"""

from __future__ import annotations

from ..hw import paging
from ..hw.memory import PhysMem
from ..hw.paging import PTE_A, PTE_D, PTE_P, PTE_U, PTE_W
from .harness import MEM_MIB, Access, Layout, setup_words

FRAMES_4K = range(0x200, 0x400)          # ppns of 4 KiB frames
FRAMES_4M = (0x400000, 0x800000, 0xC00000)
TABLE_PAGES = range(0x100, 0x180)        # ppns of page directories and tables


def flags(rng, *, w=(1, 2), u=(1, 2), a=(1, 2), d=None) -> int:
    """P plus W, U, A (and D) each with the given chance (numerator, denominator)."""
    f = PTE_P
    f |= PTE_W if rng.chance(*w) else 0
    f |= PTE_U if rng.chance(*u) else 0
    f |= PTE_A if rng.chance(*a) else 0
    if d is not None:
        f |= PTE_D if rng.chance(*d) else 0
    return f


def memory(layout: Layout) -> PhysMem:
    """Guest RAM holding exactly what the problem's program stores."""
    mem = PhysMem(MEM_MIB << 20)
    for pa, value in setup_words(layout).items():
        mem.write32(pa, value)
    return mem


def walk(layout: Layout, a: Access, mem: PhysMem | None = None) -> paging.Walk:
    """The hardware's walk of access ``a`` (on a fresh image, or ``mem``)."""
    return paging.walk(mem or memory(layout), layout.pd, a.va, write=a.op == "write",
                       user=a.user, fetch=a.op == "fetch", wp=layout.wp, pse=layout.pse)


def allows(layout: Layout, a: Access, mem: PhysMem | None = None) -> bool:
    return not walk(layout, a, mem).fault


def access_json(a: Access) -> dict:
    out = {"op": a.op, "va": a.va, "user": a.user}
    if a.op == "write":
        out["value"] = a.value
    return out


def step_json(step) -> dict:
    if isinstance(step, Access):
        return access_json(step)
    if hasattr(step, "va"):
        return {"op": "invlpg", "va": step.va}
    return {"op": "reload-cr3"}


def entries_json(space: str, base: int, entries: dict, name: str) -> list:
    return [{"entry": name, "index": i, space: base + 4 * i, "value": v}
            for i, v in sorted(entries.items()) if v]


def guest_json(layout: Layout) -> list:
    """The layout's guest entries (the page directory, the harness's entry 0
    included, then each table), as the JSON state lists them."""
    out = entries_json("pa", layout.pd, {0: layout.harness_pde(), **layout.pdes}, "gpde")
    for pa, table in sorted(layout.tables.items()):
        out += entries_json("pa", pa, table, "gpte")
    return out
