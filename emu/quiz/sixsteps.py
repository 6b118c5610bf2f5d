"""Kind ``six-steps``: guest tables, shadow tables, the PMap, the TLB and
one access under shadow paging.  What happens (a TLB hit, a hardware walk
of the shadow, or a VM exit: hidden fault, true fault, tracing fault,
dirty-bit fault, CR0.WP emulation)?  What error code does the guest get,
which spte does the VMM write, and which table entries change?

The guest program runs under shadow paging in the stepper's session up to
the question's instruction; the state shown is read off that machine, the
answer off the trace events of that one instruction and the tables after
it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw.paging import PDE_PS_RSVD, PTE_A, PTE_D, PTE_P, PTE_PS, PTE_U, PTE_W
from .answers import AnswerError, listing, number, record, word
from .common import (
    HARNESS_NOTE,
    OpenAt,
    Section,
    Worked,
    error_code_text,
    pmap_json,
    pmap_lines,
    table_lines,
    tlb_json,
    tlb_lines,
)
from .gen import (
    FRAMES_4K,
    FRAMES_4M,
    TABLE_PAGES,
    allows,
    entries_json,
    flags,
    memory,
    step_json,
)
from .harness import Access, Layout, Mark, Reload, program
from .machine import Runner, config, image_of
from .snap import changes, tables

NAME = "six-steps"
OUTCOMES = ("tlb-hit", "shadow-walk", "hidden", "true", "dirty", "tracing", "wp-emulate")
OUTCOME_TEXT = {
    "tlb-hit": "a TLB hit: no walk, no exit",
    "shadow-walk": "a TLB miss; the hardware's walk of the shadow succeeds: no exit",
    "hidden": "a hidden fault: VM exit, the VMM fills the shadow",
    "true": "a true fault: VM exit, the VMM injects #PF into the guest",
    "dirty": "a dirty-bit fault: VM exit, the VMM sets the guest's D and makes the spte writable",
    "tracing": "a tracing fault: VM exit, the VMM emulates the write to the guest's table",
    "wp-emulate": "CR0.WP=0 lets the kernel write a read-only page: VM exit, emulated",
}
POLICY = "trace-cache"
WARMUPS = {1: (1, 2), 2: (2, 3), 3: (2, 4)}


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


def _ops(rng):
    return rng.choice(("read", "write")), rng.chance(1, 2)


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


# --- solving ------------------------------------------------------------------------------
def run(problem):
    """Run the problem's program under shadow paging to the question, and
    through it.  Returns (source, the question's label, tables before, what
    the student is shown, the question's trace events, tables after)."""
    spec: Spec = problem.spec
    source = program(spec.layout, (*spec.before, Mark(), spec.question),
                     title=f"emu quiz: {problem.name}")
    label = f"a{sum(isinstance(s, Access) for s in spec.before) + 1}"
    r = Runner(image_of(source, f"quiz-{NAME}.s"), config("shadow", shadow_policy=POLICY))
    r.run_to("m1", "q" + label[1:])
    r.step_to(label)
    before = tables(r.system, spec.layout, shadow=True)
    view = _view(r.system, spec, before)
    events = r.step()
    after = tables(r.system, spec.layout, shadow=True)
    return source, label, before, view, events, after


def _view(system, spec: Spec, t) -> dict:
    """What the student is shown (lines), from the machine at the question."""
    lay = spec.layout
    return {
        "guest": [(f"the guest's page directory at pa {lay.pd:#010x}",
                   table_lines("gpde", "pa", lay.pd, t.guest[lay.pd], notes={0: HARNESS_NOTE},
                               pse=lay.pse))] +
                 [(f"the guest's page table at pa {pa:#010x}", table_lines("gpte", "pa", pa, e))
                  for pa, e in sorted(t.guest.items()) if pa != lay.pd],
        "shadow": [(f"the shadow page directory (the hardware's CR3) at ma {t.shadow_root:#010x}",
                    table_lines("spde", "ma", t.shadow_root, t.shadow[t.shadow_root],
                               notes={0: HARNESS_NOTE}))] +
                  [(f"a shadow page table at ma {ma:#010x}", table_lines("spte", "ma", ma, e))
                   for ma, e in sorted(t.shadow.items()) if ma != t.shadow_root],
        "pmap": pmap_lines(system, spec.ppns),
        "tlb": tlb_lines(system.dtlb, "ma"),
        "json": {"pmap": pmap_json(system, spec.ppns), "tlb": tlb_json(system.dtlb, "ma")},
    }


def outcome(events, va: int) -> tuple[str, dict]:
    """The case, read off the trace of the question's instruction: its first
    classified #PF exit, else whether the hardware walked."""
    for ev in events:
        if ev.step == 3 and ev.kind.endswith("_fault") and ev.va == va:
            return ev.kind[:-len("_fault")], ev.data
    for ev in events:
        if ev.kind == "shadow_walk" and ev.va is not None and ev.va >> 12 == va >> 12:
            return "shadow-walk", {}
    return "tlb-hit", {}


def work(problem) -> Worked:
    spec: Spec = problem.spec
    lay, q = spec.layout, spec.question
    source, label, before, view, events, after = run(problem)
    case, data = outcome(events, q.va)
    inject = next((ev for ev in events if ev.kind == "inject" and ev.va == q.va), None)
    fill = next((ev for ev in events if ev.kind == "shadow_fill" and ev.va == q.va), None)
    emulate = next((ev for ev in events if ev.kind == "emulate" and ev.va == q.va), None)
    ec = inject.data["error_code"] if inject is not None else None
    spte = None
    if fill is not None:
        pdx, ptx = (q.va >> 22) & 0x3FF, (q.va >> 12) & 0x3FF
        spde = after.shadow[after.shadow_root].get(pdx, 0)
        spte = ((spde & ~0xFFF) + 4 * ptx, fill.data["spte"])
    changed = changes(before, after)
    answer = {"outcome": case, "error_code": ec,
              "spte": None if spte is None else {"ma": spte[0], "value": spte[1]},
              "changed": [{"entry": c.name, c.space: c.at, "value": c.new} for c in changed]}
    solution = [OUTCOME_TEXT.get(case, case),
                "none (the guest sees no fault)" if ec is None else f"#PF, {error_code_text(ec)}",
                "none" if spte is None else f"spte at ma {spte[0]:#010x} := {spte[1]:#010x}",
                "; ".join(c.describe() for c in changed) or "none"]
    why = _why(spec, case, data, events, ec, spte, changed, emulate, before)
    steps = [s.describe() for s in spec.before]
    state = [Section(f"shadow paging ({POLICY}) · guest CR3 = {lay.pd:#010x} · CR0.WP = "
                     f"{int(lay.wp)} · CR4.PSE = {int(lay.pse)}", ()),
             Section("the guest has run, since it turned paging on",
                     tuple(f"{i}. {t}" for i, t in enumerate(steps, 1))),
             *(Section(t, tuple(lines)) for t, lines in view["guest"]),
             *(Section(t, tuple(lines)) for t, lines in view["shadow"]),
             Section("the PMap (the exercise's guest pages)", tuple(view["pmap"])),
             Section("the data TLB (the exercise's pages; va -> ma)", tuple(view["tlb"]))]
    questions = [f"the {q.describe()}: what happens? ({', '.join(OUTCOMES)})",
                 "the #PF error code the guest's handler gets (none if it gets none)",
                 "the spte the VMM writes in step 4: its ma and value (none if it writes none)",
                 "every guest and shadow entry of the exercise that changes, with its new "
                 "value (the quiz kernel's pdx 0 left out)"]
    state_json = {"mode": "shadow", "policy": POLICY, "cr3": lay.pd, "wp": lay.wp,
                  "pse": lay.pse, **spec.to_json(),
                  "guest": [x for pa, e in sorted(before.guest.items())
                            for x in entries_json("pa", pa, e,
                                                  "gpde" if pa == lay.pd else "gpte")],
                  "shadow_root": before.shadow_root,
                  "shadow": [x for ma, e in sorted(before.shadow.items())
                             for x in entries_json("ma", ma, e, "spde" if ma ==
                                                   before.shadow_root else "spte")],
                  **view["json"]}
    return Worked(
        intro="Under shadow paging the hardware walks the shadow tables (its CR3 is the "
              "shadow root) and the TLB caches va -> ma. Follow the access through the six "
              "steps of a virtualized translation.",
        state=state, questions=questions, answer=answer, solution=solution, why=why,
        state_json=state_json, program=source,
        open_at=OpenAt("shadow", (label,), _stop_events(case),
                       "stopped where the VMM classifies the access (or the hardware "
                       "answers it); 'micro' goes on step by step",
                       (("shadow_policy", POLICY),)))


def _stop_events(case: str) -> tuple:
    """The trace event where ``--open`` stops: the classification (step 3)
    of an exit, the TLB fill of a successful shadow walk; a TLB hit makes
    none, so the stepper stays before the instruction."""
    if case == "tlb-hit":
        return ()
    if case == "shadow-walk":
        return ("tlb_fill",)
    return (case + "_fault",)


def _why(spec, case, data, events, ec, spte, changed, emulate, before) -> list[str]:
    q = spec.question
    vpn = q.va >> 12
    pdx = (q.va >> 22) & 0x3FF
    spde = before.shadow[before.shadow_root].get(pdx, 0)
    if case == "tlb-hit":
        first = "the TLB already holds va's page with rights that allow this access"
    elif case == "shadow-walk":
        first = ("the TLB does not hold the page (or holds it clean for a write), but the "
                 "shadow does: the hardware walk succeeds and refills the TLB")
    elif case == "true":
        first = "the guest's own walk denies the access, so the fault is the guest's"
    elif case == "hidden":
        where = "the spde is not present" if not spde & PTE_P else "the spte is not present"
        first = f"the guest allows it but the shadow lacks it ({where}): the VMM fills it"
    elif case == "dirty":
        first = ("the page is clean (gpte D=0), so its spte is read-only: the write exits "
                 "and the VMM sets D")
    elif case == "tracing":
        first = (f"va maps guest page-table page ppn {data.get('ppn', 0):#x}, which the VMM "
                 "write-protects; the write is emulated")
    elif case == "wp-emulate":
        first = "CR0.WP=0 lets the kernel write the read-only page; no spte may allow it"
    else:
        first = case
    if ec is not None:
        second = f"the guest's walk of va {q.va:#010x} gives {error_code_text(ec)}"
    else:
        second = "no true fault: the guest never sees one"
    if spte is not None:
        third = (f"the PMap's machine page {spte[1] >> 12:#x} with the guest's rights "
                 f"(W only once the gpte's D is set); it goes in the shadow table for "
                 f"va {vpn << 12:#010x}")
    elif emulate is not None:
        third = (f"no fill: the write is emulated ({len(emulate.data.get('changed', []))} "
                 f"guest entries changed, {emulate.data.get('dropped', 0)} sptes dropped)")
    else:
        third = "no VMM step 4: the VMM writes no spte for this access"
    if changed:
        kinds = []
        for c in changed:
            bits = c.old ^ c.new
            if c.old and bits & ~(PTE_A | PTE_D) == 0:
                what = " and ".join(n for b, n in ((PTE_A, "A"), (PTE_D, "D")) if bits & b)
                kinds.append(f"{c.name} {what}")
            else:
                kinds.append(f"{c.name} written")
        fourth = "; ".join(kinds)
    else:
        fourth = "nothing in the tables changes"
    return [first, second, third, fourth]


# --- grading --------------------------------------------------------------------------------
def items(answer, spec: Spec, worked=None) -> list:
    a = record(answer, "the answer", ("outcome", "error_code", "spte", "changed"))
    for key in ("outcome", "error_code", "spte", "changed"):
        if key not in a:
            raise AnswerError(f"the answer has no '{key}' (null where there is none)")
    out = [word(a["outcome"], "'outcome'", OUTCOMES)]
    out.append(None if a["error_code"] is None else number(a["error_code"], "'error_code'"))
    sp = a["spte"]
    if sp is None:
        out.append(None)
    else:
        sp = record(sp, "'spte'", ("ma", "value"))
        out.append((number(sp.get("ma"), "the spte's ma"),
                    number(sp.get("value"), "the spte's value")))
    ch = []
    for i, c in enumerate(listing(a["changed"], "'changed'")):
        c = record(c, f"changed[{i}]", ("entry", "pa", "ma", "value"))
        name = word(c.get("entry"), f"changed[{i}].entry", ("gpde", "gpte", "spde", "spte"))
        space = "pa" if name[0] == "g" else "ma"
        if space not in c:
            raise AnswerError(f"changed[{i}] is a {name}: give its address as '{space}'")
        ch.append((name, number(c[space], f"changed[{i}].{space}"),
                   number(c.get("value"), f"changed[{i}].value")))
    out.append(frozenset(ch))
    return out


def show(item) -> str:
    if item is None:
        return "none"
    if isinstance(item, str):
        return item
    if isinstance(item, int):
        return f"error code {item:#x}"
    if isinstance(item, tuple):
        return f"spte at ma {item[0]:#010x} := {item[1]:#010x}"
    return "; ".join(f"{n} at {'pa' if n[0] == 'g' else 'ma'} {at:#010x} := {v:#010x}"
                     for n, at, v in sorted(item, key=lambda t: (t[0][0] != "g", t[1]))) \
        or "none"
