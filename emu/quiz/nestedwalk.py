"""Kind ``nested-walk``: one access under nested paging, the data TLB just
flushed (a CR3 reload; global entries stay) and the nested-translation
cache (NTLB) as the guest's earlier accesses left it.  How many memory
references does the hardware's two-dimensional walk make, and which, in
order?  For two-level guest and nested tables and no cache hit,
(2+1)(2+1)-1 = 8.

The guest program runs under nested paging up to the question
(``machine.Runner``); the state is read off that machine (the nested table the
VMM built, the NTLB), the answer is the walker's own record of the walk
(``NestedWalker``'s grid, as the trace and the stepper show it).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw.paging import PTE_G, PTE_P, PTE_PS
from .answers import AnswerError, listing, number, record, word
from .common import (
    HARNESS_NOTE,
    OpenAt,
    Section,
    Worked,
    error_code_text,
    machine_table,
    table_lines,
    tlb_json,
    tlb_lines,
)
from .gen import FRAMES_4K, FRAMES_4M, TABLE_PAGES, allows, entries_json, flags, step_json
from .harness import Access, Layout, Mark, Reload, ResumeAt, program
from .machine import Runner, config, image_of
from .snap import tables

NAME = "nested-walk"
OUTCOMES = ("tlb-hit", "tlb-fill", "ept-violation", "page-fault")
OUTCOME_TEXT = {
    "tlb-hit": "a TLB hit (a global entry survived the reload): no walk at all",
    "tlb-fill": "the 2D walk completes and fills the TLB",
    "ept-violation": "the 2D walk finds no nested entry: an EPT violation, a VM exit",
    "page-fault": "the guest's own table denies it: #PF, delivered to the guest",
}
REFS = ("npde", "npte", "gpde", "gpte")
NTLB = {1: (0, 0), 2: (4, 8), 3: (0, 2)}


@dataclass(frozen=True)
class Spec:
    layout: Layout
    before: tuple
    question: Access
    ntlb: int                  # NTLB entries (0: none)
    aim: str

    def to_json(self) -> dict:
        return {"ntlb_entries": self.ntlb, "before": [step_json(s) for s in self.before],
                "access": step_json(self.question)}


# --- generating ---------------------------------------------------------------------------
def generate(rng, difficulty: int) -> Spec:
    d = difficulty
    pse = d == 3 and rng.chance(2, 3)
    pages = rng.sample(TABLE_PAGES, 3)
    pd, pt1, pt2 = (p << 12 for p in pages)
    pdx1, pdx2, pdx_np, pdx_big = rng.sample(range(1, 1024), 4)
    frames = rng.sample(FRAMES_4K, 10)
    pdes = {pdx1: pt1 | flags(rng, w=(3, 4), u=(3, 4)), pdx2: pt2 | flags(rng, w=(3, 4)),
            pdx_np: 0}
    tabs = {pt1: {}, pt2: {}}
    for pt in (pt1, pt2):
        for ptx in rng.sample(range(1024), 2 + d):
            g = PTE_G if d >= 2 and rng.chance(1, 6) else 0
            tabs[pt][ptx] = (frames.pop() << 12) | flags(rng, d=(1, 2)) | g
        tabs[pt][rng.choice([i for i in range(1024) if i not in tabs[pt]])] = 0
    if pse:
        pdes[pdx_big] = rng.choice(FRAMES_4M) | PTE_PS | flags(rng, w=(3, 4), d=(1, 2))
    layout = Layout(pd=pd, pdes=pdes, tables=tabs, wp=True, pse=pse, pge=True,
                    global_harness=True, prime_stack=True)
    lo, hi = NTLB[d]
    ntlb = rng.between(lo, hi)
    mapped = []
    for pdx, gpde in sorted(pdes.items()):
        if gpde & PTE_P and pse and gpde & PTE_PS:
            mapped.append(((pdx << 22) | (rng.below(1024) << 12), gpde))
        elif gpde & PTE_P:
            mapped += [((pdx << 22) | (ptx << 12), e) for ptx, e in tabs[gpde & ~0xFFF].items()]
    reads = [va for va, e in mapped if e & PTE_P and allows(layout, Access("read", va))]
    holes = [(pdx_np << 22) | (rng.below(1024) << 12)]
    holes += [va for va, e in mapped if not e & PTE_P]
    aims = ["walk", "walk", "fresh", "hole"] + (["global"] if d >= 2 else []) + \
        (["large", "large"] if pse else [])
    aim = rng.choice(aims)
    n_before = rng.between(1, d + 1)
    warm = [rng.choice(reads) for _ in range(n_before)]
    if aim == "large":
        big = [va for va, e in mapped if e & PTE_PS and e & PTE_P]
        target = big[0] if big else rng.choice(warm)
        if target not in warm:
            warm.append(target)
    elif aim == "walk":
        local = [va for va in warm if not dict(mapped).get(va, 0) & PTE_G]
        target = rng.choice(local or warm)
    elif aim == "fresh":
        untouched = [va for va in reads if va not in warm]
        target = rng.choice(untouched or reads)
    elif aim == "hole":
        target = rng.choice(holes)
    else:
        glob = [va for va, e in mapped if e & PTE_P and e & PTE_G and not e & PTE_PS
                and va in reads]
        target = rng.choice(glob) if glob else rng.choice(warm)
        if target not in warm:
            warm.append(target)
    before = [Access(rng.choice(("read", "write")) if allows(layout, Access("write", va))
                     else "read", va | (rng.below(1024) * 4), False, 0x5EED0000 | i)
              for i, va in enumerate(warm, 1)]
    writable = aim == "hole" or allows(layout, Access("write", target))
    q = Access(rng.choice(("read", "write")) if writable else "read",
               target | (rng.below(1024) * 4), False, 0x5EED0000 | (len(before) + 1))
    steps = (*before, ResumeAt("done"), Reload())
    return Spec(layout, steps, q, ntlb, aim)


# --- solving ------------------------------------------------------------------------------
def run(problem):
    spec: Spec = problem.spec
    source = program(spec.layout, (*spec.before, Mark(), spec.question),
                     title=f"emu quiz: {problem.name}")
    label = f"a{sum(isinstance(s, Access) for s in spec.before) + 1}"
    r = Runner(image_of(source, f"quiz-{NAME}.s"), config("nested", ntlb_entries=spec.ntlb))
    r.run_to("m1", "q" + label[1:])
    r.step_to(label)
    system = r.system
    walker = system.mmu.walker
    state = {"tables": tables(system, spec.layout, shadow=False),
             "ncr3": walker.ncr3,
             "ntlb": list(walker.ntlb.items()),
             "tlb": tlb_lines(system.dtlb, "ma"), "tlb_json": tlb_json(system.dtlb, "ma")}
    npd = machine_table(system, walker.ncr3 >> 12)
    state["npd"] = npd
    state["npts"] = {npde & ~0xFFF: {i: v for i, v in machine_table(system, npde >> 12).items()
                                     if (pdx << 10) | i >= 0x100}
                     for pdx, npde in sorted(npd.items()) if npde & PTE_P}
    seen = []

    def listen(ev):
        # The walker's own record of its last walk, at each event: a guest
        # #PF (delivered natively) has no walk event of its own.
        if ev.kind in ("nested_walk", "deliver", "tlb_fill", "tlb_miss", "walk"):
            grid = ev.data.get("grid") if ev.kind == "nested_walk" else list(walker.last_grid)
            seen.append((ev, [tuple(r) for r in grid]))
    unsubscribe = system.bus.subscribe(listen)
    try:
        r.step()
    finally:
        unsubscribe()
    return source, label, state, seen


def solve(spec: Spec, seen) -> tuple[str, list, dict]:
    """(outcome, the walk's grid, the event that decided) from the events of
    the question's instruction."""
    q = spec.question
    vpn = q.va >> 12
    for ev, grid in seen:
        if ev.kind == "tlb_miss" and ev.va is not None and ev.va >> 12 != vpn:
            raise RuntimeError(f"an unexpected TLB miss at va {ev.va:#010x} before the "
                               "question's walk: a bug in emu quiz")
        if ev.kind == "nested_walk" and ev.va is not None and ev.va >> 12 == vpn:
            return ("ept-violation" if ev.step == 1 else "tlb-fill"), grid, ev.data
        if ev.kind == "deliver" and ev.data.get("vector") == 14:
            return "page-fault", grid, ev.data
    return "tlb-hit", [], {}


def _rows(grid):
    """The grid as (row, [(column, ma), ...]) in walk order."""
    out = []
    for row, col, ma, _ in grid:
        row = row or "data"
        if not out or out[-1][0] != row:
            out.append((row, []))
        out[-1][1].append((col, ma))
    return out


def _row_text(row: str, cells) -> str:
    parts = ["NTLB hit" if col == "ntlb" else f"{col} at ma {ma:#010x}" for col, ma in cells]
    return f"{row} row: " + ", ".join(parts)


def references(grid) -> list:
    return [(col, ma) for _, col, ma, _ in grid if col in REFS]


def work(problem) -> Worked:
    spec: Spec = problem.spec
    lay, q = spec.layout, spec.question
    source, label, st, seen = run(problem)
    case, grid, data = solve(spec, seen)
    refs = references(grid)
    answer = {"outcome": case, "refs": len(refs),
              "references": [{"what": what, "ma": ma} for what, ma in refs]}
    solution = [OUTCOME_TEXT[case], f"{len(refs)} memory references",
                ", ".join(f"{what} at ma {ma:#010x}" for what, ma in refs) or "none"]
    hits = sum(1 for _, col, _, _ in grid if col == "ntlb")
    rows = len({r for r, _, _, _ in grid})
    if case == "tlb-hit":
        why_case = "the page's gpte has G=1 and CR4.PGE=1: its TLB entry survived the reload"
    elif case == "ept-violation":
        why_case = (f"guest-physical {data.get('gpa', 0):#010x} has no nested entry yet: the "
                    "walk stops there and exits")
    elif case == "page-fault":
        why_case = f"the guest's walk fails: {error_code_text(data.get('error_code') or 0)}"
    else:
        why_case = "every guest and nested entry on the way is present"
    why_refs = (f"{rows} row{'s' if rows != 1 else ''} of the grid, each a nested walk "
                f"(npde, npte) unless the NTLB holds the page "
                f"({hits} hit{'s' if hits != 1 else ''}), plus the guest entries read"
                if grid else "no walk: no reference")
    why_list = "; ".join(_row_text(row, cells) for row, cells in _rows(grid)) or "none"
    t = st["tables"]
    state = [Section(f"nested paging · guest CR3 = {lay.pd:#010x} · CR4.PSE = {int(lay.pse)}, "
                     f"PGE = 1 · NTLB entries: {spec.ntlb or 'none (off)'}", ()),
             Section("the guest has run, since it turned paging on",
                     tuple(f"{i}. {s.describe()}" for i, s in enumerate(
                         [x for x in spec.before if not isinstance(x, ResumeAt)], 1))),
             Section(f"the guest's page directory at pa {lay.pd:#010x}",
                     tuple(table_lines("gpde", "pa", lay.pd, t.guest[lay.pd],
                                       notes={0: HARNESS_NOTE}, pse=lay.pse))),
             *(Section(f"the guest's page table at pa {pa:#010x}",
                       tuple(table_lines("gpte", "pa", pa, e)))
               for pa, e in sorted(t.guest.items()) if pa != lay.pd),
             Section(f"the nested page directory at ma {st['ncr3']:#010x}",
                     tuple(table_lines("npde", "ma", st["ncr3"], st["npd"]))),
             *(Section(f"a nested page table at ma {ma:#010x} (guest pages from ppn 0x100; "
                       "the quiz kernel's left out)", tuple(table_lines("npte", "ma", ma, e)))
               for ma, e in sorted(st["npts"].items())),
             Section("the NTLB (pa page -> ma page), least recently used first",
                     tuple(f"ppn {ppn:#x} -> mpn {mpn:#x}" for ppn, (mpn, _) in st["ntlb"])
                     or ("(empty)",)),
             Section("the data TLB after the reload (the exercise's pages)", tuple(st["tlb"]))]
    questions = [f"the {q.describe()}: what happens? ({', '.join(OUTCOMES)})",
                 "how many memory references does the hardware's walk make?",
                 "the references in order: npde, npte, gpde or gpte, and its ma"]
    state_json = {"mode": "nested", "cr3": lay.pd, "pse": lay.pse, "pge": True,
                  **spec.to_json(), "ncr3": st["ncr3"],
                  "guest": [x for pa, e in sorted(t.guest.items())
                            for x in entries_json("pa", pa, e,
                                                  "gpde" if pa == lay.pd else "gpte")],
                  "nested": entries_json("ma", st["ncr3"], st["npd"], "npde") +
                  [x for ma, e in sorted(st["npts"].items())
                   for x in entries_json("ma", ma, e, "npte")],
                  "ntlb": [{"ppn": p, "mpn": m} for p, (m, _) in st["ntlb"]],
                  "tlb": st["tlb_json"]}
    return Worked(
        intro="Under nested paging the hardware walks the guest's table, and translates "
              "every guest-physical address it meets (the guest's CR3, each gpde's table, "
              "the data page) through the VMM's nested table, unless the NTLB holds it.",
        state=state, questions=questions, answer=answer, solution=solution,
        why=[why_case, why_refs, why_list], state_json=state_json, program=source,
        open_at=OpenAt("nested", (label,), () if case == "tlb-hit" else
                       ("nested_walk", "deliver"),
                       "stopped at the question's 2D walk" + (
                           ": " + why_list if case == "tlb-fill" else
                           " (a TLB hit: 'step' makes no walk)" if case == "tlb-hit" else ""),
                       (("ntlb_entries", spec.ntlb),)))


# --- grading --------------------------------------------------------------------------------
def items(answer, spec: Spec, worked=None) -> list:
    a = record(answer, "the answer", ("outcome", "refs", "references"))
    for key in ("outcome", "refs", "references"):
        if key not in a:
            raise AnswerError(f"the answer has no '{key}'")
    refs = []
    for i, r in enumerate(listing(a["references"], "'references'")):
        r = record(r, f"references[{i}]", ("what", "ma"))
        refs.append((word(r.get("what"), f"references[{i}].what", REFS),
                     number(r.get("ma"), f"references[{i}].ma")))
    return [word(a["outcome"], "'outcome'", OUTCOMES), number(a["refs"], "'refs'"),
            tuple(refs)]


def show(item) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, int):
        return f"{item} references"
    return ", ".join(f"{w} at ma {ma:#010x}" for w, ma in item) or "none"
