"""Kind ``cost``: a short trace of accesses and CR3 reloads, and the cost
model.  How many cycles does it take in each mode, by category, and which
of shadow and nested paging is cheaper for it?

The same guest program runs natively, under shadow paging and under
nested paging (``machine.Runner``), held at the trace's first step and at
its end; each mode's answer is the difference of
``System.cycles_by_category()`` (what ``--stats-json`` and the stepper's
``stats`` print) between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..cost import DEFAULT_COSTS
from ..hw.paging import PTE_A, PTE_P, PTE_U, PTE_W
from .answers import AnswerError, number, record, word
from .common import HARNESS_NOTE, OpenAt, Section, Worked, table_lines
from .gen import FRAMES_4K, TABLE_PAGES, flags, guest_json, step_json
from .harness import Access, Layout, Mark, Reload, program
from .machine import Runner, config, image_of

NAME = "cost"
MODES = ("native", "shadow", "nested")
SEGMENT = {1: (2, 3), 2: (3, 4), 3: (4, 6)}


@dataclass(frozen=True)
class Spec:
    layout: Layout
    before: tuple              # warm-up steps (not counted)
    trace: tuple               # the steps whose cycles are asked

    def to_json(self) -> dict:
        return {"before": [step_json(s) for s in self.before],
                "trace": [step_json(s) for s in self.trace],
                "costs": DEFAULT_COSTS.describe()}


def generate(rng, difficulty: int) -> Spec:
    d = difficulty
    pages_ = rng.sample(TABLE_PAGES, 3)
    pd, pt1, pt2 = (p << 12 for p in pages_)
    pdx1, pdx2 = rng.sample(range(1, 1024), 2)
    frames = rng.sample(FRAMES_4K, 8)
    t1, t2 = {}, {}
    for i, ptx in enumerate(rng.sample(range(1024), 6)):
        (t1 if i < 4 else t2)[ptx] = (frames[i] << 12) | flags(rng, w=(1, 1), u=(1, 1), d=(1, 2))
    window = None
    if d == 3:
        # A kernel window on the first page table: a write there changes a gpte.
        wptx = rng.choice([i for i in range(1024) if i not in t2])
        t2[wptx] = pt1 | PTE_P | PTE_W | PTE_A
        window = (pdx2 << 22) | (wptx << 12)
    layout = Layout(pd=pd, pdes={pdx1: pt1 | PTE_P | PTE_W | PTE_U | PTE_A,
                                 pdx2: pt2 | PTE_P | PTE_W | PTE_U | PTE_A},
                    tables={pt1: t1, pt2: t2}, wp=True, pge=True, global_harness=True,
                    prime_stack=True)
    vas = [(pdx1 << 22) | (ptx << 12) for ptx in sorted(t1)] + \
        [(pdx2 << 22) | (ptx << 12) for ptx in sorted(t2) if (pdx2 << 22) | (ptx << 12) != window]
    n = 0

    def access(va, user=False):
        nonlocal n
        n += 1
        return Access(rng.choice(("read", "write")), va | (rng.below(1024) * 4), user,
                      0x5EED0000 | n)
    warm = rng.sample(vas, rng.between(1, 3))
    before = tuple(access(va, rng.chance(1, 3)) for va in warm)
    fresh = [va for va in vas if va not in warm]
    lo, hi = SEGMENT[d]
    trace = []
    reloads = 0 if d == 1 else rng.between(0, d - 1)
    for i in range(rng.between(lo, hi)):
        if reloads and rng.chance(1, 3):
            reloads -= 1
            trace.append(Reload())
        # The first access touches a page never touched: every mode has work.
        trace.append(access(rng.choice(fresh) if i == 0 or rng.chance(1, 2)
                            else rng.choice(warm)))
    if window is not None and rng.chance(1, 2):
        idx = rng.choice(sorted(t1))
        trace.insert(rng.below(len(trace) + 1),
                     Access("write", window | (idx * 4), False, t1[idx] | PTE_A))
    return Spec(layout, before, tuple(trace))


# --- solving ------------------------------------------------------------------------------
def steps(spec: Spec) -> tuple:
    """The program's steps: the warm-up, a marker, the trace."""
    return (*spec.before, Mark(), *spec.trace)


def labels(spec: Spec) -> tuple[str, str]:
    """The labels of the trace's first step and of its end."""
    nacc = sum(isinstance(s, Access) for s in spec.before)
    first = spec.trace[0]
    if isinstance(first, Access):
        return f"q{nacc + 1}", "done"
    k = sum(not isinstance(s, (Access, Mark)) for s in spec.before)
    return f"s{k + 1}", "done"


def measure(image, mode: str, spec: Spec):
    """(cycles by category, trace events) of the trace in ``mode``: the
    difference of ``System.cycles_by_category()`` from its first step to
    its end, the run held at both."""
    start, end = labels(spec)
    r = Runner(image, config(mode))
    r.run_to("m1", start)
    c0 = r.system.cycles_by_category()
    events = r.step_to(end)
    c1 = r.system.cycles_by_category()
    cats = {k: c1.get(k, 0) - c0.get(k, 0) for k in sorted(set(c0) | set(c1))}
    return {k: v for k, v in cats.items() if v}, events


def run(problem):
    spec: Spec = problem.spec
    source = program(spec.layout, steps(spec), title=f"emu quiz: {problem.name}")
    image = image_of(source, f"quiz-{NAME}.s")
    return source, {mode: measure(image, mode, spec) for mode in MODES}


def _summary(mode: str, events) -> str:
    """What cost cycles, in words, from the trace events."""
    walks = [e for e in events if e.kind in ("walk", "shadow_walk", "nested_walk")]
    exits: dict[str, int] = {}
    for e in events:
        if e.kind == "vm_exit":
            reason = e.data.get("reason")
            exits[reason] = exits.get(reason, 0) + 1
    faults: dict[str, int] = {}
    for e in events:
        if e.step == 3 and e.kind.endswith("_fault"):
            k = e.kind[:-len("_fault")]
            faults[k] = faults.get(k, 0) + 1
    allocs = sum(1 for e in events if e.kind == "pmap_lookup" and e.data.get("allocated"))
    parts = [f"{len(walks)} hardware walk{'s' if len(walks) != 1 else ''}"]
    if exits:
        parts.append("exits: " + ", ".join(f"{n} {r}" for r, n in sorted(exits.items())))
    if faults:
        parts.append("faults: " + ", ".join(f"{n} {k}" for k, n in sorted(faults.items())))
    if allocs:
        parts.append(f"{allocs} machine page{'s' if allocs != 1 else ''} allocated and zeroed")
    return f"{mode}: " + "; ".join(parts)


UNITS = {   # category -> (one, more than one, cycles each)
    "walk": ("hardware walk reference", "hardware walk references", DEFAULT_COSTS.walk_ref),
    "vm_exit": ("VM exit", "VM exits", DEFAULT_COSTS.vm_exit),
    "vm_entry": ("VM entry", "VM entries", DEFAULT_COSTS.vm_entry),
    "vmm_guest_walk": ("guest-table reference by the VMM", "guest-table references by the VMM",
                       DEFAULT_COSTS.vmm_walk_ref),
    "vmm_pmap": ("PMap lookup", "PMap lookups", DEFAULT_COSTS.vmm_pmap_lookup),
    "vmm_alloc": ("page allocated and zeroed", "pages allocated and zeroed",
                  DEFAULT_COSTS.vmm_alloc + DEFAULT_COSTS.vmm_zero_page),
    "vmm_fill_shadow": ("spte written", "sptes written", DEFAULT_COSTS.vmm_fill_shadow),
    "vmm_fill_nested": ("npte written", "nptes written", DEFAULT_COSTS.vmm_fill_shadow),
    "vmm_inject": ("injection", "injections", DEFAULT_COSTS.vmm_inject)}
FIRST = ("guest", "walk", "vm_exit", "vm_entry")


def categories(cycles: dict) -> dict:
    """The categories asked of each mode: natively guest and walk (there is
    no VMM); under a VMM every category either VMM mode spent cycles in:
    guest, walk, vm_exit, vm_entry first, then the VMM's steps by name."""
    names = {k for m in ("shadow", "nested") for k in cycles[m]} | {"guest", "walk"}
    vmm = [k for k in FIRST if k in names] + sorted(names - set(FIRST))
    return {"native": ["guest", "walk"], "shadow": vmm, "nested": vmm}


def _why_cat(mode: str, cat: str, value: int, summary: str) -> str:
    if not value:
        return f"{mode} paging spends nothing there; {summary}"
    one, more, unit = UNITS.get(cat, (None, None, 0))
    if one and value % unit == 0:
        n = value // unit
        return f"{n} {one if n == 1 else more} x {unit}; {summary}"
    if cat == "guest":
        return f"the trace's instructions (ISA cycles) and memory references; {summary}"
    return summary


def work(problem) -> Worked:
    spec: Spec = problem.spec
    lay = spec.layout
    source, measured = run(problem)
    cycles = {mode: measured[mode][0] for mode in MODES}
    cats = categories(cycles)
    totals = {mode: sum(c.values()) for mode, c in cycles.items()}
    if totals["shadow"] == totals["nested"]:
        winner = "tie"
    else:
        winner = "shadow" if totals["shadow"] < totals["nested"] else "nested"
    answer = {"cycles": {m: {k: cycles[m].get(k, 0) for k in cats[m]} for m in MODES},
              "winner": winner}
    questions, solution, why = [], [], []
    for mode in MODES:
        summary = _summary(mode, measured[mode][1])
        for cat in cats[mode]:
            value = cycles[mode].get(cat, 0)
            questions.append(f"{mode}: cycles in {cat}")
            solution.append(f"{value:,}")
            why.append(_why_cat(mode, cat, value, summary))
    questions.append("which is cheaper for this trace: shadow or nested (or tie)?")
    solution.append(winner + f" (shadow {totals['shadow']:,} cycles, nested "
                             f"{totals['nested']:,}; natively {totals['native']:,})")
    why.append("the mode with fewer cycles in all")
    steps = _steps_text(spec.before)
    trace = _steps_text(spec.trace, len([s for s in spec.before if isinstance(s, Access)]))
    costs = DEFAULT_COSTS.describe()
    state = [Section(f"guest CR3 = {lay.pd:#010x} · CR0.WP = 1 · CR4.PGE = 1 (the quiz "
                     "kernel's pages are global: a CR3 reload keeps them in the TLB) · the same "
                     "guest in each mode; shadow paging: trace-cache; nested paging: a 16-entry "
                     "NTLB · TLBs of 64 entries, 4-way, split", ()),
             Section(f"the guest's page directory at pa {lay.pd:#010x}",
                     tuple(table_lines("gpde", "pa", lay.pd, {0: lay.harness_pde(), **lay.pdes},
                                       notes={0: HARNESS_NOTE}))),
             *(Section(f"the guest's page table at pa {pa:#010x}",
                       tuple(table_lines("gpte", "pa", pa, e)))
               for pa, e in sorted(lay.tables.items())),
             Section("first (not counted): since paging went on, the guest has run", steps),
             Section("then the trace whose cycles are asked", trace),
             Section("the cost model (cycles; emu/cost.py)",
                     tuple(f"{k:<16} {v:>4}" for k, v in costs.items())),
             Section("categories: guest = instructions (ISA cycles) + memory references; walk = "
                     "hardware walk references x walk_ref; vm_exit, vm_entry; vmm_<step> = "
                     "the VMM's steps (guest_walk, pmap, alloc = alloc + zero_page, "
                     "fill_shadow, fill_nested, cr3 = flush, emulate, inject)", ())]
    return Worked(
        intro="Run the trace natively, under shadow paging and under nested paging. Guest "
              "pages the guest has not touched yet have no machine page: the VMM allocates "
              "and zeroes one on the first touch. Give the cycles of the trace alone, by "
              "category, in each mode (0 where a mode spends none).",
        state=state, questions=questions, answer=answer, solution=solution, why=why,
        state_json={"cr3": lay.pd, **spec.to_json(), "categories": cats,
                    "guest": guest_json(lay)},
        program=source,
        open_at=OpenAt("shadow", labels(spec), (),
                       "stopped at the trace's first step; 'stats' shows the cycles by "
                       "category, 'continue' runs to the trace's end"))


def _steps_text(steps, first: int = 0) -> tuple:
    out, n = [], first
    for s in steps:
        if isinstance(s, Access):
            n += 1
            out.append(f"{n}. {s.describe()}")
        else:
            out.append(f"   {s.describe()}")
    return tuple(out)


# --- grading --------------------------------------------------------------------------------
def items(answer, spec: Spec, worked) -> list:
    """Aligned with the questions: each mode's cycles in each of the
    problem's categories (a category left out is 0), then the winner."""
    a = record(answer, "the answer", ("cycles", "winner"))
    cyc = record(a.get("cycles"), "'cycles'", MODES)
    cats = worked.state_json["categories"]
    out = []
    for mode in MODES:
        given = record(cyc.get(mode, {}), f"cycles.{mode}", cats[mode])
        out += [number(given.get(cat, 0), f"cycles.{mode}.{cat}") for cat in cats[mode]]
    if "winner" not in a:
        raise AnswerError("the answer has no 'winner'")
    out.append(word(a["winner"], "'winner'", ("shadow", "nested", "tie")))
    return out


def show(item) -> str:
    if isinstance(item, str):
        return item
    return f"{item:,} cycles"
