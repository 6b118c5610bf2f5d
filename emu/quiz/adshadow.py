"""Kind ``ad-shadow``: a sequence of accesses under shadow paging.  Which
of them exit to the VMM (and as what), and what are the guest's A and D
bits at the end?  The VMM keeps them exact: it sets A when it fills an
spte, and maps a clean page read-only so that the first write exits and
sets D.

The guest program runs under shadow paging; each VM exit is matched to
its access by the exit's eip, the bits are read from guest memory when
the guest powers off.  Natively the hardware sets the same bits itself
(the tests compare).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw.paging import PTE_A, PTE_D, PTE_P, PTE_U, PTE_W
from ..system import System
from ..ui.probe import Probe
from .answers import AnswerError, flag, listing, record, word
from .common import HARNESS_NOTE, OpenAt, Section, Worked, table_lines
from .gen import FRAMES_4K, TABLE_PAGES, allows, guest_json, step_json
from .harness import Access, Layout, Reload, program
from .machine import config, image_of

NAME = "ad-shadow"
EXITS = ("none", "hidden", "dirty", "hidden+dirty")
PAGES = {1: 3, 2: 4, 3: 5}
LENGTH = {1: 4, 2: 6, 3: 8}


@dataclass(frozen=True)
class Spec:
    layout: Layout
    steps: tuple
    pages: tuple               # (pdx, va of the page, pa of its gpte) in the question's order
    policy: str

    def to_json(self) -> dict:
        return {"policy": self.policy, "steps": [step_json(s) for s in self.steps],
                "pages": [va for _, va, _ in self.pages]}


def generate(rng, difficulty: int) -> Spec:
    d = difficulty
    policy = "trace-cache" if d < 3 else rng.choice(("trace-cache", "trace-drop"))
    pages_ = rng.sample(TABLE_PAGES, 3)
    pd, pt1, pt2 = (p << 12 for p in pages_)
    pdx1, pdx2 = rng.sample(range(1, 1024), 2)
    frames = rng.sample(FRAMES_4K, PAGES[d])
    tabs = {pt1: {}, pt2: {}}
    pages = []
    for i, ptx in enumerate(rng.sample(range(1024), PAGES[d])):
        pt, pdx = (pt1, pdx1) if i % 2 == 0 or d == 1 else (pt2, pdx2)
        a = PTE_A if rng.chance(1, 3) else 0
        dirty = PTE_D if rng.chance(1, 4) else 0
        gpte = (frames[i] << 12) | PTE_P | (PTE_W if rng.chance(4, 5) else 0) | \
            (PTE_U if rng.chance(1, 2) else 0) | a | dirty
        tabs[pt][ptx] = gpte
        pages.append((pdx, (pdx << 22) | (ptx << 12), pt + 4 * ptx))
    pdes = {pdx1: pt1 | PTE_P | PTE_W | PTE_U | (PTE_A if rng.chance(1, 2) else 0)}
    if tabs[pt2]:
        pdes[pdx2] = pt2 | PTE_P | PTE_W | PTE_U | (PTE_A if rng.chance(1, 2) else 0)
    else:
        del tabs[pt2]
    layout = Layout(pd=pd, pdes=pdes, tables=tabs, wp=True, prime_stack=True)
    steps, n, seen = [], 0, []
    offsets = rng.sample(range(1024), LENGTH[d])     # every access at its own va
    while n < LENGTH[d]:
        if d >= 2 and n >= 2 and rng.chance(1, 6) and not isinstance(steps[-1], Reload):
            steps.append(Reload())
            continue
        va = rng.choice(seen) if seen and rng.chance(1, 2) else rng.choice(pages)[1]
        user = rng.chance(1, 2)
        choices = [op for op in ("read", "write") if allows(layout, Access(op, va, user))]
        if not choices:
            user = not user
            choices = [op for op in ("read", "write") if allows(layout, Access(op, va, user))]
        op = rng.choice(choices)
        n += 1
        seen.append(va)
        steps.append(Access(op, va | (offsets[n - 1] * 4), user, 0x5EED0000 | n, guard=True))
    if not any(isinstance(a, Access) and isinstance(b, Access) and a.va >> 12 == b.va >> 12
               for a, b in zip(steps, steps[1:])):
        # Never all exits: the last access reads the page the one before it
        # used, at its privilege (a TLB hit).
        prev = [s for s in steps if isinstance(s, Access)][-2]
        last = steps[-1]
        steps[-1] = Access("read", (prev.va & ~0xFFF) | (last.va & 0xFFF), prev.user,
                           last.value, guard=True)
        if isinstance(steps[-2], Reload):
            steps[-2], steps[-3] = steps[-3], steps[-2]
    pages.sort(key=lambda p: p[1])
    return Spec(layout, tuple(steps), tuple(pages), policy)


# --- solving ------------------------------------------------------------------------------
def run(problem, mode: str = "shadow"):
    """Run the program in ``mode``; returns (source, exits per access (the
    fault kinds of its #PF exits), the vas the hardware walked the shadow
    for, guest tables at the end)."""
    spec: Spec = problem.spec
    source = program(spec.layout, spec.steps, title=f"emu quiz: {problem.name}")
    image = image_of(source, f"quiz-{NAME}.s")
    system = System(image, config(mode, shadow_policy=spec.policy))
    accesses = [s for s in spec.steps if isinstance(s, Access)]
    where = {image.symbols[f"a{i}"]: i for i in range(1, len(accesses) + 1)}
    exits: dict[int, list] = {i: [] for i in where.values()}
    current = [None]
    walked = set()

    def listen(ev):
        if ev.kind == "shadow_walk" and ev.step is None:
            walked.add(ev.va)           # a walk that succeeded: no exit
        elif ev.kind == "vm_exit" and ev.step == 2:
            current[0] = where.get(ev.data.get("eip"))
        elif ev.step == 3 and ev.kind.endswith("_fault") and current[0] is not None:
            exits[current[0]].append(ev.kind[:-len("_fault")])
    if mode != "native":
        system.bus.subscribe(listen)
    system.env.run(until=system.start())     # (System.run, less the memory hash)
    if system.outcome != "poweroff" or system.exit_status != 0:
        raise RuntimeError(f"the quiz program ended with {system.outcome}: {system.message}")
    p = Probe(system)
    final = {pa: p.guest_table(pa) for pa in (spec.layout.pd, *spec.layout.tables)}
    return source, [exits[i] for i in sorted(exits)], walked, final


def bits(spec: Spec, final) -> tuple[list, list]:
    """(A of each gpde used, (A, D) of each page's gpte) at the end."""
    pdes = [bool(final[spec.layout.pd][pdx] & PTE_A) for pdx in sorted(spec.layout.pdes)]
    ptes = []
    for _, _, pa in spec.pages:
        v = final[pa & ~0xFFF][(pa & 0xFFF) >> 2]
        ptes.append((bool(v & PTE_A), bool(v & PTE_D)))
    return pdes, ptes


def work(problem) -> Worked:
    spec: Spec = problem.spec
    lay = spec.layout
    source, exits, walked, final = run(problem)
    pde_a, pte_ad = bits(spec, final)
    names = ["+".join(e) if e else "none" for e in exits]
    answer = {"exits": names, "gpdes": pde_a,
              "gptes": [{"a": a, "d": d} for a, d in pte_ad]}
    accesses = [s for s in spec.steps if isinstance(s, Access)]
    questions = [f"access {i} ({a.describe()}): which exit? ({', '.join(EXITS)})"
                 for i, a in enumerate(accesses, 1)]
    questions += [f"gpde[{pdx:#05x}] at the end: A?" for pdx in sorted(lay.pdes)]
    questions += [f"the gpte of va {va:#010x} at the end: A and D?" for _, va, _ in spec.pages]
    solution = list(names) + [f"A={int(a)}" for a in pde_a] + \
        [f"A={int(a)} D={int(d)}" for a, d in pte_ad]
    why = _why(spec, accesses, exits, walked, pde_a, pte_ad)
    steps, n = [], 0
    for s in spec.steps:
        if isinstance(s, Access):
            n += 1
            steps.append(f"{n}. {s.describe()}")
        else:
            steps.append(f"   {s.describe()}")
    state = [Section(f"shadow paging ({spec.policy}) · guest CR3 = {lay.pd:#010x} · "
                     "CR0.WP = 1 · no shadow entry and no TLB entry for these pages yet", ()),
             Section(f"the guest's page directory at pa {lay.pd:#010x}",
                     tuple(table_lines("gpde", "pa", lay.pd, {0: lay.harness_pde(), **lay.pdes},
                                       notes={0: HARNESS_NOTE}))),
             *(Section(f"the guest's page table at pa {pa:#010x}",
                       tuple(table_lines("gpte", "pa", pa, e)))
               for pa, e in sorted(lay.tables.items())),
             Section("the guest runs", tuple(steps))]
    return Worked(
        intro="The guest's A and D bits must stay exact under shadow paging, though the "
              "hardware sets them only in the shadow. Which accesses exit to the VMM, and "
              "what does the guest see in its tables at the end?",
        state=state, questions=questions, answer=answer, solution=solution, why=why,
        state_json={"mode": "shadow", "cr3": lay.pd, **spec.to_json(),
                    "guest": guest_json(lay)},
        program=source,
        open_at=OpenAt("shadow", tuple(f"a{i}" for i in range(1, len(accesses) + 1)), (),
                       "stopped at access 1; 'next' runs to its exit if it has one, "
                       "'continue' to the next access",
                       (("shadow_policy", spec.policy),)))


def _why(spec, accesses, exits, walked, pde_a, pte_ad) -> list[str]:
    out = []
    last: dict[int, int] = {}          # vpn -> the step index that last touched it
    reloads: list[int] = []
    exit_of = iter(exits)
    for i, step in enumerate(spec.steps):
        if isinstance(step, Reload):
            reloads.append(i)
            continue
        e, vpn = next(exit_of), step.va >> 12
        seen = last.get(vpn)
        reloaded = seen is not None and any(r > seen for r in reloads)
        if not e:
            out.append("no exit: the hardware's walk finds the spte (the TLB entry is gone, or "
                       "clean for this write)" if step.va in walked else
                       "no exit: a TLB hit")
        elif e == ["hidden"]:
            why = "not in the shadow yet" if seen is None else \
                "the CR3 reload dropped the shadows (trace-drop)" if reloaded and \
                spec.policy == "trace-drop" else "not in the shadow for this access"
            out.append(f"hidden fault: {why}; the VMM walks the guest's table (A set"
                       + (", and D: a write)" if step.op == "write" else ")"))
        elif e == ["dirty"]:
            out.append("dirty fault: the spte is read-only because the gpte was clean "
                       "when it was filled; the VMM sets D")
        else:
            out.append(" then ".join(e))
        last[vpn] = i
    for pdx, a in zip(sorted(spec.layout.pdes), pde_a):
        initially = bool(spec.layout.pdes[pdx] & PTE_A)
        out.append("it was set already" if initially else
                   "the VMM's walk through it set A" if a else "no walk went through it")
    for (_, va, pa), _bits in zip(spec.pages, pte_ad):
        gpte = spec.layout.tables[pa & ~0xFFF][(pa & 0xFFF) >> 2]
        used = [x for x in accesses if x.va >> 12 == va >> 12]
        parts = ["A was set already" if gpte & PTE_A else
                 "A set by the first access" if used else "A stays 0: never accessed",
                 "D was set already" if gpte & PTE_D else
                 "D set by a write" if any(x.op == "write" for x in used) else
                 "D stays 0: never written"]
        out.append("; ".join(parts))
    return out


# --- grading --------------------------------------------------------------------------------
def items(answer, spec: Spec, worked=None) -> list:
    a = record(answer, "the answer", ("exits", "gpdes", "gptes"))
    n = sum(isinstance(s, Access) for s in spec.steps)
    out = [word(x, f"exits[{i}]", EXITS)
           for i, x in enumerate(listing(a.get("exits"), "'exits'", n))]
    out += [flag(x, f"gpdes[{i}]") for i, x in
            enumerate(listing(a.get("gpdes"), "'gpdes'", len(spec.layout.pdes)))]
    for i, x in enumerate(listing(a.get("gptes"), "'gptes'", len(spec.pages))):
        x = record(x, f"gptes[{i}]", ("a", "d"))
        if "a" not in x or "d" not in x:
            raise AnswerError(f"gptes[{i}] needs both 'a' and 'd'")
        out.append((flag(x["a"], f"gptes[{i}].a"), flag(x["d"], f"gptes[{i}].d")))
    return out


def show(item) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, bool):
        return f"A={int(item)}"
    return f"A={int(item[0])} D={int(item[1])}"
