"""Generating ``six-steps`` problems: a guest layout with a window on one
of its own page tables, a few accesses, and a question access steered
towards one case (a TLB hit, a shadow walk, a hidden, true, dirty, tracing
or wp-emulate fault).  The steering only picks the access; the answer is
what the emulator does with it (``sixsteps.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw.paging import PDE_PS_RSVD, PTE_A, PTE_D, PTE_P, PTE_PS, PTE_U, PTE_W
from .gen import (
    FRAMES_4K,
    FRAMES_4M,
    TABLE_PAGES,
    allows,
    flags,
    memory,
    step_json,
)
from .harness import Access, Layout, Reload

WARMUPS = {1: (1, 2), 2: (2, 3), 3: (2, 4)}     # accesses before the question


@dataclass(frozen=True)
class Spec:
    layout: Layout
    before: tuple            # the steps run before the question (accesses, reloads)
    question: Access
    aim: str                 # the case the generator steered towards (not the answer)
    ppns: tuple              # the exercise's guest pages (for the PMap)

    def to_json(self) -> dict:
        return {"before": [step_json(s) for s in self.before],
                "access": step_json(self.question)}


# --- generating ---------------------------------------------------------------------------
def _pages(layout: Layout):
    """(va of a mapped 4 KiB page, gpte or gpde) of every present mapping."""
    out = []
    for pdx, gpde in sorted(layout.pdes.items()):
        if not gpde & PTE_P:
            continue
        if layout.pse and gpde & PTE_PS:
            out.append(((pdx << 22) | (0x155 << 12), gpde))
            continue
        for ptx, gpte in sorted(layout.tables[gpde & ~0xFFF].items()):
            if gpte & PTE_P:
                out.append(((pdx << 22) | (ptx << 12), gpte))
    return out


def _layout(rng, d: int) -> tuple[Layout, int, int]:
    """A random layout; returns it, the va that maps the first page table
    (the guest's window on its own table) and that table's pdx."""
    wp = True if d < 3 else rng.chance(1, 2)
    pse = d == 3 and rng.chance(2, 3)
    pages = rng.sample(TABLE_PAGES, 3)
    pd, pt1, pt2 = (p << 12 for p in pages)
    pdx1, pdx2, pdx_np, pdx_big = rng.sample(range(1, 1024), 4)
    frames = rng.sample(FRAMES_4K, 12)
    pdes = {pdx1: pt1 | PTE_P | PTE_W | PTE_U | (PTE_A if rng.chance(1, 2) else 0),
            pdx2: pt2 | flags(rng, w=(2, 3), u=(2, 3)),
            pdx_np: 0}
    t1, t2 = {}, {}
    for ptx in rng.sample(range(1024), 3 + d):
        t1[ptx] = (frames.pop() << 12) | flags(rng, w=(2, 3), u=(2, 3), d=(1, 2))
    for ptx in rng.sample(range(1024), 2 + d):
        t2[ptx] = (frames.pop() << 12) | flags(rng, w=(2, 3), u=(2, 3), d=(1, 2))
    np_ptx = rng.choice([i for i in range(1024) if i not in t1])
    t1[np_ptx] = 0 if rng.chance(1, 2) else (frames.pop() << 12) | PTE_W | PTE_U
    # The guest maps its first page table, kernel-only and writable.
    window_ptx = rng.choice([i for i in range(1024) if i not in t2])
    t2[window_ptx] = pt1 | PTE_P | PTE_W | (PTE_A if rng.chance(1, 2) else 0)
    if pse:
        big = rng.choice(FRAMES_4M) | PTE_PS | flags(rng, w=(2, 3), u=(2, 3), d=(1, 2))
        pdes[pdx_big] = big | (PDE_PS_RSVD if rng.chance(1, 2) else 0)
    layout = Layout(pd=pd, pdes=pdes, tables={pt1: t1, pt2: t2}, wp=wp, pse=pse,
                    prime_stack=True)
    return layout, (pdx2 << 22) | (window_ptx << 12), pdx1


def generate(rng, difficulty: int) -> Spec:
    d = difficulty
    layout, window, pdx1 = _layout(rng, d)
    aims = ["hidden", "true", "true", "tlb-hit", "dirty"]
    if d >= 2:
        aims += ["shadow-walk", "tracing"]
    if not layout.wp:
        aims.append("wp-emulate")
    aim = rng.choice(aims)
    pages = [(va, e) for va, e in _pages(layout) if va != window]
    n = 0

    def acc(op, va_page, user, value=0):
        nonlocal n
        n += 1
        off = rng.below(0x3FF) * 4
        return Access(op, va_page | off, user, value or (0x5EED0000 | n), guard=True)

    mem = memory(layout)

    def allowed(va_page, op, user):
        return allows(layout, Access(op, va_page, user), mem)

    combos = [(va, op, user) for va, _ in pages for op in ("read", "write")
              for user in (False, True) if allowed(va, op, user)]
    lo, hi = WARMUPS[d]
    before = []
    for _ in range(rng.between(lo, hi)):
        va, op, user = rng.choice(combos)
        before.append(acc(op, va, user))
    touched = {a.va >> 12 for a in before}
    question = None
    if aim == "hidden":
        fresh = [c for c in combos if c[0] >> 12 not in touched]
        if fresh:
            va, op, user = rng.choice(fresh)
            question = acc(op, va, user)
    elif aim == "true":
        question = _denied(rng, layout, pages, allowed, acc)
    elif aim in ("tlb-hit", "shadow-walk"):
        va, op, user = rng.choice(combos)
        before.append(acc(op, va, user))
        if aim == "shadow-walk":
            before.append(Reload())
            op = "read"
        question = acc(op, va, user)
    elif aim == "dirty":
        clean = [(va, user) for va, e in pages for user in (False, True)
                 if not e & PTE_D and allowed(va, "write", user)
                 and va >> 12 not in touched]
        if clean:
            va, user = rng.choice(clean)
            before.append(acc("read", va, user))
            question = acc("write", va, user)
    elif aim == "tracing":
        if not any(a.va >> 22 == pdx1 for a in before):
            va, op, user = rng.choice([c for c in combos if c[0] >> 22 == pdx1])
            before.append(acc(op, va, user))
        t1 = layout.tables[layout.pdes[pdx1] & ~0xFFF]
        idx = rng.choice(sorted(t1))
        new = (rng.choice(FRAMES_4K) << 12) | flags(rng, w=(1, 2), u=(1, 2))
        question = Access("write", window | (idx * 4), False, new, guard=True)
    elif aim == "wp-emulate":
        ro = [va for va, e in pages if not e & PTE_W and allowed(va, "write", False)]
        if ro:
            question = acc("write", rng.choice(ro), False)
    if question is None:                 # that case is impossible here: a fresh page
        va, op, user = rng.choice(combos)
        question = acc(op, va, user)
    ppns = sorted({layout.pd >> 12, *(pt >> 12 for pt in layout.tables),
                   *(e >> 12 for _, e in pages if not e & PTE_PS)})
    return Spec(layout, tuple(before), question, aim, tuple(ppns))


def _denied(rng, layout: Layout, pages, allowed, acc):
    """An access the guest's tables deny, of a shape drawn first: not
    present (gpde or gpte), a user access to a supervisor page, a write to
    a read-only page (user, or kernel under CR0.WP=1), a reserved bit."""
    shapes = {
        "not-present": [(va, op, user) for va in _holes(layout) if not _rsvd(layout, va)
                        for op in ("read", "write") for user in (False, True)],
        "supervisor": [(va, op, True) for va, _ in pages for op in ("read", "write")
                       if not allowed(va, op, True) and allowed(va, op, False)],
        "read-only": [(va, "write", user) for va, _ in pages for user in (False, True)
                      if allowed(va, "read", user) and not allowed(va, "write", user)],
        "reserved": [(va, op, user) for va in _holes(layout) if _rsvd(layout, va)
                     for op in ("read", "write") for user in (False, True)],
    }
    weight = {"not-present": 3, "supervisor": 2, "read-only": 2, "reserved": 3}
    shape = rng.choice([k for k, v in shapes.items() if v for _ in range(weight[k])])
    va, op, user = rng.choice(shapes[shape])
    return acc(op, va, user)


def _rsvd(layout: Layout, va: int) -> bool:
    gpde = layout.pdes.get(va >> 22, 0)
    return bool(layout.pse and gpde & PTE_P and gpde & PTE_PS and gpde & PDE_PS_RSVD)


def _holes(layout: Layout) -> list[int]:
    """Pages the guest does not map: a not-present gpte or gpde."""
    out = []
    for pdx, gpde in sorted(layout.pdes.items()):
        if not gpde & PTE_P:
            out.append((pdx << 22) | (0x2A5 << 12))
        elif layout.pse and gpde & PTE_PS:
            if gpde & PDE_PS_RSVD:
                out.append((pdx << 22) | (0x0F0 << 12))
        else:
            for ptx, gpte in sorted(layout.tables[gpde & ~0xFFF].items()):
                if not gpte & PTE_P:
                    out.append((pdx << 22) | (ptx << 12))
    return out
