"""Kind ``tlb``: a data TLB (entries, ways, replacement policy, global
pages) and a sequence of accesses, CR3 reloads and INVLPGs, run natively:
hit or miss for each access, and what each set holds at the end.

The answer is the project's TLB component (``emu.hw.tlb.Tlb``) driven as
the MMU drives it: a lookup per access, the hardware walk's translation
inserted on a miss, a flush per CR3 load (global entries kept under
CR4.PGE), an invalidation per INVLPG.  The problem's guest program makes
the same accesses, one instruction each and no other data access, so the
stepper's ``tlb`` view shows the same sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw.paging import PTE_A, PTE_D, PTE_G, PTE_P, PTE_W
from ..hw.tlb import Tlb, TlbEntry
from .answers import AnswerError, listing, number, record, word
from .common import HARNESS_NOTE, OpenAt, Section, Worked, table_lines
from .gen import FRAMES_4K, TABLE_PAGES, guest_json, step_json, walk
from .harness import Access, Invlpg, Layout, Reload, program

NAME = "tlb"
GEOMETRY = {1: ((4, 2), (4, 4)), 2: ((8, 2), (8, 4), (4, 2)), 3: ((8, 2), (16, 4), (8, 4))}
LENGTH = {1: 8, 2: 12, 3: 14}
POLICIES = ("lru", "fifo")


@dataclass(frozen=True)
class Spec:
    layout: Layout
    steps: tuple
    entries: int
    ways: int
    policy: str

    @property
    def sets(self) -> int:
        return self.entries // self.ways

    def to_json(self) -> dict:
        return {"entries": self.entries, "ways": self.ways, "policy": self.policy,
                "pge": self.layout.pge, "steps": [step_json(s) for s in self.steps]}


def generate(rng, difficulty: int) -> Spec:
    d = difficulty
    entries, ways = rng.choice(GEOMETRY[d])
    policy = rng.choice(POLICIES)
    sets = entries // ways
    pge = d == 3
    pages = rng.sample(TABLE_PAGES, 3)
    pd, pt1, pt2 = (p << 12 for p in pages)
    pdx1, pdx2 = rng.sample(range(1, 1024), 2)
    # A few more pages than ways, crowded into one or two sets: evictions.
    hot = rng.sample(range(sets), 1 if ways > 2 else min(sets, 2))
    per_set = 2 * ways
    frames = rng.sample(FRAMES_4K, per_set * len(hot))
    tabs, vas, used = {pt1: {}, pt2: {}}, [], set()
    for h in hot:
        for _ in range(per_set):
            while True:
                pt, pdx = (pt1, pdx1) if rng.chance(2, 3) else (pt2, pdx2)
                ptx = rng.below(1024 // sets) * sets + h
                if (pdx, ptx) not in used:
                    break
            used.add((pdx, ptx))
            g = PTE_G if pge and rng.chance(1, 3) else 0
            tabs[pt][ptx] = (frames[len(vas)] << 12) | PTE_P | PTE_W | PTE_A | PTE_D | g
            vas.append((pdx << 22) | (ptx << 12))
    pdes = {pdx: pt | PTE_P | PTE_W | PTE_A for pdx, pt in ((pdx1, pt1), (pdx2, pt2))
            if tabs[pt]}
    layout = Layout(pd=pd, pdes=pdes, tables={pt: t for pt, t in tabs.items() if t},
                    wp=True, pge=pge)
    while True:
        spec = Spec(layout, _steps(rng, d, vas, ways), entries, ways, policy)
        results, _ = simulate(spec)
        if any(hit for hit, _, _ in results) and any(v is not None for _, _, v in results):
            return spec          # never trivial: a hit and an eviction at least


def _steps(rng, d: int, vas: list, ways: int) -> tuple:
    reloads = 0 if d == 1 else rng.between(1, 2)
    invlpgs = 1 if d == 3 else 0
    steps, recent = [], []
    n = 0
    while n < LENGTH[d]:
        if n >= 3 and isinstance(steps[-1], Access):
            if reloads and rng.chance(1, 5):
                reloads -= 1
                steps.append(Reload())
                continue
            if invlpgs and rng.chance(1, 5):
                invlpgs -= 1
                steps.append(Invlpg(rng.choice(recent) | rng.below(0x1000)))
                continue
        if recent and rng.chance(1, 4):
            va = rng.choice(sorted(set(recent[-2 * ways:])))
        else:
            va = rng.choice(vas)
        recent.append(va)
        n += 1
        steps.append(Access(rng.choice(("read", "write")), va | (rng.below(1024) * 4), False,
                            0x5EED0000 | n))
    return tuple(steps)


# --- solving ------------------------------------------------------------------------------
def simulate(spec: Spec):
    """Drive a ``Tlb`` as the MMU does.  Returns one (hit, set, victim vpn)
    per access and the TLB at the end."""
    tlb = Tlb(spec.entries, spec.ways, spec.policy, 0, "dtlb")
    out = []
    for step in spec.steps:
        if isinstance(step, Reload):
            tlb.flush(keep_global=spec.layout.pge)
        elif isinstance(step, Invlpg):
            tlb.invlpg(step.va >> 12)
        else:
            vpn = step.va >> 12
            hit = tlb.lookup(vpn) is not None
            victim = None
            if not hit:
                w = walk(spec.layout, step)
                if w.fault:
                    raise RuntimeError(f"a tlb problem's access faults at {step.va:#010x}")
                victim = tlb.insert(TlbEntry(vpn, w.frame >> 12, None, w.writable, w.user_ok,
                                             w.dirty, w.global_ and spec.layout.pge))
            out.append((hit, vpn & tlb.set_mask, victim.vpn if victim is not None else None))
    return out, tlb


def final_sets(tlb: Tlb) -> list:
    """Each set's pages (va of the page), next to be replaced first."""
    return [[vpn << 12 for vpn in s] for s in tlb.sets]


def work(problem) -> Worked:
    spec: Spec = problem.spec
    lay = spec.layout
    results, tlb = simulate(spec)
    sets = final_sets(tlb)
    accesses = [s for s in spec.steps if isinstance(s, Access)]
    answer = {"accesses": ["hit" if hit else "miss" for hit, _, _ in results],
              "sets": sets}
    order = "least recently used first" if spec.policy == "lru" else "oldest first"
    solution = ["hit" if hit else "miss" for hit, _, _ in results]
    why = []
    for (hit, sidx, victim), a in zip(results, accesses):
        if hit:
            why.append(f"va {a.va & ~0xFFF:#010x} is in set {sidx}")
        elif victim is None:
            why.append(f"not in set {sidx}; a free way takes it")
        else:
            rule = "least recently used" if spec.policy == "lru" else "oldest"
            why.append(f"not in set {sidx}; it replaces va {victim << 12:#010x}, the {rule}")
    for i, pages in enumerate(sets):
        solution.append(", ".join(f"{va:#010x}" for va in pages) or "empty")
        why.append(f"what the accesses left in set {i}, listed {order}")
    steps = []
    n = 0
    for s in spec.steps:
        if isinstance(s, Access):
            n += 1
            steps.append(f"{n}. {s.describe()}")
        else:
            steps.append(f"   {s.describe()}")
    kind = "fully associative (one set)" if spec.sets == 1 else \
        f"{spec.ways}-way set-associative, {spec.sets} sets (set = vpn mod {spec.sets})"
    state = [Section(f"natively · a data TLB of {spec.entries} entries, {kind}, "
                     f"{spec.policy.upper()} replacement · CR4.PGE = {int(lay.pge)} · it starts "
                     "empty (paging has just been turned on)", ()),
             Section(f"the guest's page directory at pa {lay.pd:#010x}",
                     tuple(table_lines("gpde", "pa", lay.pd, {0: lay.harness_pde(), **lay.pdes},
                                       notes={0: HARNESS_NOTE}))),
             *(Section(f"the guest's page table at pa {pa:#010x}",
                       tuple(table_lines("gpte", "pa", pa, e)))
               for pa, e in sorted(lay.tables.items())),
             Section("the guest runs (nothing else touches the data TLB)", tuple(steps))]
    questions = [f"access {i}: hit or miss?" for i in range(1, len(accesses) + 1)]
    questions += [f"set {i} at the end: which pages (va) does it hold?"
                  for i in range(spec.sets)]
    labels = tuple(f"a{i}" for i in range(1, len(accesses) + 1))
    return Worked(
        intro="Each access looks its page up in the data TLB; a miss walks the tables and "
              "fills an entry in the page's set, replacing one when the set is full. A CR3 "
              "reload empties the TLB but for global entries (G=1 under CR4.PGE); INVLPG "
              "drops one page.",
        state=state, questions=questions, answer=answer, solution=solution, why=why,
        state_json={"mode": "native", "cr3": lay.pd, **spec.to_json(),
                    "guest": guest_json(lay)},
        program=program(lay, spec.steps, title=f"emu quiz: {problem.name}"),
        open_at=OpenAt("native", labels, (),
                       "stopped at access 1; 'step' runs one, 'tlb' shows the sets, "
                       "'continue' goes to the next access",
                       (("tlb_entries", spec.entries), ("tlb_ways", spec.ways),
                        ("tlb_policy", spec.policy))))


# --- grading --------------------------------------------------------------------------------
def items(answer, spec: Spec, worked=None) -> list:
    a = record(answer, "the answer", ("accesses", "sets"))
    n = sum(isinstance(s, Access) for s in spec.steps)
    acc = listing(a.get("accesses"), "'accesses'", n)
    out = [word(x, f"accesses[{i}]", ("hit", "miss")) for i, x in enumerate(acc)]
    sets = listing(a.get("sets"), "'sets'", spec.sets)
    for i, pages in enumerate(sets):
        pages = listing(pages, f"sets[{i}]")
        vas = [number(v, f"sets[{i}][{j}]") & ~0xFFF for j, v in enumerate(pages)]
        if len(set(vas)) != len(vas):
            raise AnswerError(f"sets[{i}] names a page twice")
        out.append(frozenset(vas))
    return out


def show(item) -> str:
    if isinstance(item, str):
        return item
    return ", ".join(f"{va:#010x}" for va in sorted(item)) or "empty"
