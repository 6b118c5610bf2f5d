"""Kind ``translate``: a guest page directory and tables, CR3, CR0.WP and
CR4.PSE; translate each access to a pa, or give its #PF error code.

The answer is the hardware walk (``emu.hw.paging.walk``) of each access on
a memory image holding exactly the words the problem's guest program
stores; the program itself (``--open``, ``--source``) prints, for each
access, the value it read (the quiz puts each pa's own address there), or
the error code its #PF handler was given.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..hw import paging
from ..hw.paging import PDE_PS_RSVD, PF_P, PF_RSVD, PTE_P, PTE_PS, PTE_U, PTE_W
from .answers import AnswerError, listing, number, record
from .common import HARNESS_NOTE, OpenAt, Section, Worked, error_code_text, table_lines
from .gen import FRAMES_4K, FRAMES_4M, TABLE_PAGES, access_json, flags, guest_json, walk
from .harness import Access, Layout, fetch_stub, program

NAME = "translate"
SUMMARY = "translate virtual addresses through a guest page directory and tables"
ACCESSES = {1: 4, 2: 6, 3: 8}


@dataclass(frozen=True)
class Spec:
    layout: Layout
    accesses: tuple

    def to_json(self) -> dict:
        lay = self.layout
        return {"mode": "native", "cr3": lay.pd, "wp": lay.wp, "pse": lay.pse,
                "guest": guest_json(lay),
                "accesses": [access_json(a) for a in self.accesses]}


# --- generating ---------------------------------------------------------------------------
def _not_present(rng, difficulty: int, frames) -> int:
    """A not-present entry: 0, or (harder) one whose other bits look like a
    mapping (the hardware ignores them)."""
    if difficulty == 1 or rng.chance(1, 2):
        return 0
    return (rng.choice(frames) << 12) | PTE_W | (PTE_U if rng.chance(1, 2) else 0)


def generate(rng, difficulty: int) -> Spec:
    d = difficulty
    pse = d == 3 or (d == 2 and rng.chance(1, 2))
    wp = True if d == 1 else rng.chance(1, 2)
    pages = rng.sample(TABLE_PAGES, 3)
    pd = pages[0] << 12
    n_tables = 1 if d == 1 else 2
    n_large = (2 if d == 3 else 1) if pse else 0
    pdxs = rng.sample(range(1, 1024), n_tables + 1 + n_large)
    frames = rng.sample(FRAMES_4K, 16)
    pdes, tables, targets = {}, {}, []
    for i in range(n_tables):
        pt = pages[1 + i] << 12
        pdes[pdxs[i]] = pt | flags(rng, w=(5, 6), u=(5, 6))
        entries = {}
        ptxs = rng.sample(range(1024), 3 + d)
        for j, ptx in enumerate(ptxs):
            if j == 0:
                entries[ptx] = _not_present(rng, d, frames)
            else:
                entries[ptx] = (frames.pop() << 12) | flags(rng, w=(1, 2), u=(2, 3), d=(1, 2))
            targets.append(("pte" if entries[ptx] & PTE_P else "np-pte", pdxs[i], ptx))
        tables[pt] = entries
    np_pdx = pdxs[n_tables]
    pdes[np_pdx] = _not_present(rng, d, [p >> 12 for p in tables])
    targets.append(("np-pde", np_pdx, None))
    for k, big in enumerate(rng.sample(FRAMES_4M, n_large)):
        pdx = pdxs[n_tables + 1 + k]
        gpde = big | PTE_PS | flags(rng, w=(1, 2), u=(2, 3), d=(1, 2))
        if d == 3 and k == 1:
            gpde |= PDE_PS_RSVD          # bit 21 of a 4 MiB PDE is reserved
        pdes[pdx] = gpde
        targets.append(("large", pdx, None))
    layout = Layout(pd=pd, pdes=pdes, tables=tables, wp=wp, pse=pse, prime_stack=True)
    while True:
        accesses = _accesses(rng, d, targets)
        results = [walk(layout, a) for a in accesses]
        if any(w.fault for w in results) and not all(w.fault for w in results):
            return Spec(layout, accesses)


def _accesses(rng, d: int, targets) -> tuple:
    weights = {"pte": 6, "np-pte": 2, "np-pde": 1, "large": 3}
    pool = [t for t in targets for _ in range(weights[t[0]])]
    offsets = rng.sample(range(0x10, 0xFF8, 8), ACCESSES[d])
    ops = ("read", "write") if d == 1 else ("read", "write", "read", "write", "fetch")
    out, seen = [], set()
    for n, off in enumerate(offsets, 1):
        while True:
            what, pdx, ptx = rng.choice(pool)
            if ptx is None:
                ptx = rng.below(1024)
            va = (pdx << 22) | (ptx << 12) | off
            if va >> 12 not in seen or len(seen) >= len(targets):
                break
        seen.add(va >> 12)
        op = rng.choice(ops)
        out.append(Access(op, va, user=rng.chance(1, 2),
                          value=0x5EED0000 | n if op == "write" else 0, guard=True))
    return tuple(out)


# --- solving ------------------------------------------------------------------------------
def with_data(spec: Spec, walks) -> Layout:
    """The layout plus what the program needs to show each result: at each
    pa a read reaches, that pa; where a fetch lands, ``mov eax, pa; ret``."""
    data = []
    for a, w in zip(spec.accesses, walks):
        if w.fault:
            continue
        if a.op == "read":
            data.append((w.pa, w.pa))
        elif a.op == "fetch":
            lo, hi = fetch_stub(w.pa)
            data += [(w.pa, lo), (w.pa + 4, hi)]
    return replace(spec.layout, data=tuple(data))


def why(layout: Layout, a: Access, w: paging.Walk) -> str:
    """One line: which entries the walk used, and what decided."""
    used = []
    for lv in w.levels:
        idx = (a.va >> (22 if lv.name == "pde" else 12)) & 0x3FF
        used.append(f"g{lv.name}[{idx:#05x}] = {lv.value:#010x}")
    path = ", ".join(used)
    if not w.fault:
        if w.large:
            return f"{path}: a 4 MiB page at {w.pa & 0xFFC00000:#010x}, + va[21:0] " \
                   f"{a.va & 0x3FFFFF:#08x} = pa {w.pa:#010x}"
        return f"{path}: frame {w.frame:#010x} + offset {a.va & 0xFFF:#05x} = pa {w.pa:#010x}"
    ec = w.error_code or 0
    last = w.levels[-1]
    if ec & PF_RSVD:
        return f"{path}: a 4 MiB gpde with bit 21 set (reserved): #PF with P and RSVD"
    if not ec & PF_P:
        return f"{path}: the g{last.name} is not present (P=0)"
    values = [lv.value for lv in w.levels]
    if a.user and not all(v & PTE_U for v in values):
        where = " and ".join(f"g{lv.name}" for lv in w.levels if not lv.value & PTE_U)
        return f"{path}: U/S=0 in the {where}: a user access to a supervisor page"
    where = " and ".join(f"g{lv.name}" for lv in w.levels if not lv.value & PTE_W)
    who = "a user write" if a.user else "a kernel write with CR0.WP=1"
    return f"{path}: R/W=0 in the {where}: {who} to a read-only page"


def work(problem) -> Worked:
    spec: Spec = problem.spec
    lay = spec.layout
    walks = [walk(lay, a) for a in spec.accesses]   # each on the state shown
    answer, solution, whys = [], [], []
    for a, w in zip(spec.accesses, walks):
        if w.fault:
            answer.append({"error_code": w.error_code})
            solution.append(f"#PF, {error_code_text(w.error_code)}")
        else:
            answer.append({"pa": w.pa})
            solution.append(f"pa {w.pa:#010x}")
        whys.append(why(lay, a, w))
    state = [Section(f"CR3 = {lay.pd:#010x} · CR0.WP = {int(lay.wp)} · "
                     f"CR4.PSE = {int(lay.pse)}", ())]
    state.append(Section(f"the guest's page directory at pa {lay.pd:#010x}",
                         tuple(table_lines("gpde", "pa", lay.pd,
                                           {0: lay.harness_pde(), **lay.pdes},
                                           notes={0: HARNESS_NOTE}, pse=lay.pse))))
    for pa, entries in sorted(lay.tables.items()):
        state.append(Section(f"the guest's page table at pa {pa:#010x}",
                             tuple(table_lines("gpte", "pa", pa, entries))))
    questions = [a.describe() for a in spec.accesses]
    source = program(with_data(spec, walks), spec.accesses,
                     title=f"emu quiz: {problem.name}", report=True)
    labels = tuple(f"a{n}" for n in range(1, len(spec.accesses) + 1))
    return Worked(
        intro="Translate each access to the guest-physical address it reaches, or give "
              "the #PF error code it raises (P=1 protection, W=2 write, U=4 user mode, "
              "RSVD=8 reserved bit). A fetch is a read that executes.",
        state=state, questions=questions, answer={"accesses": answer}, solution=solution,
        why=whys, state_json=spec.to_json(), program=source,
        open_at=OpenAt("native", labels, (),
                       "stopped at access 1: 'step' runs it, 'continue' goes to the next "
                       "access, 'pt VA' shows a walk"))


# --- grading --------------------------------------------------------------------------------
def items(answer, spec: Spec, worked=None) -> list:
    """The answer as one comparable item per access: ("pa", pa) or
    ("pf", error code)."""
    acc = listing(record(answer, "the answer", ("accesses",)).get("accesses"),
                  "'accesses'", len(spec.accesses))
    out = []
    for n, item in enumerate(acc, 1):
        item = record(item, f"access {n}", ("pa", "error_code"))
        if len(item) != 1:
            raise AnswerError(f"access {n} must give either 'pa' or 'error_code'")
        if "pa" in item:
            out.append(("pa", number(item["pa"], f"access {n}'s pa")))
        else:
            out.append(("pf", number(item["error_code"], f"access {n}'s error_code")))
    return out


def show(item) -> str:
    what, value = item
    return f"pa {value:#010x}" if what == "pa" else f"#PF error code {value:#x}"
