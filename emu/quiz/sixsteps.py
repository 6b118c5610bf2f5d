"""Kind ``six-steps``: guest tables, shadow tables, the PMap, the TLB and
one access under shadow paging.  What happens (a TLB hit, a hardware walk
of the shadow, or a VM exit: hidden fault, true fault, tracing fault,
dirty-bit fault, CR0.WP emulation)?  What error code does the guest get,
which spte does the VMM write, and which table entries change?

The guest program (``sixgen.py`` makes it) runs under shadow paging up to
the question's instruction, as the stepper would run it; the state shown is
read off that machine, the answer off the trace events of that one
instruction and the tables after it.
"""

from __future__ import annotations

from ..hw.paging import PTE_A, PTE_D, PTE_P
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
from .gen import entries_json
from .harness import Access, Mark, program
from .machine import Runner, config, image_of
from .sixgen import Spec, generate
from .snap import changes, tables

__all__ = ["NAME", "OUTCOMES", "Spec", "generate", "items", "run", "show", "work"]

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
        n_changed = len(emulate.data.get("changed", []))
        n_dropped = emulate.data.get("dropped", 0)
        third = (f"no fill: the write is emulated ({n_changed} guest "
                 f"entr{'y' if n_changed == 1 else 'ies'} changed, {n_dropped} "
                 f"spte{'' if n_dropped == 1 else 's'} dropped)")
    else:
        third = "no VMM step 4: the VMM writes no spte for this access"
    if changed:
        kinds = []
        for c in changed:
            bits = c.old ^ c.new
            if c.old and bits & ~(PTE_A | PTE_D) == 0:
                what = " and ".join(n for b, n in ((PTE_A, "A"), (PTE_D, "D")) if bits & b)
                kinds.append(f"{c.name} {what}")
            elif (spte is not None and (c.space, c.at) == ("ma", spte[0])
                  and c.new != spte[1] and (c.new ^ spte[1]) & ~(PTE_A | PTE_D) == 0):
                what = " and ".join(n for b, n in ((PTE_A, "A"), (PTE_D, "D"))
                                    if (c.new ^ spte[1]) & b)
                kinds.append(f"spte written by the VMM as {spte[1]:#010x}, then {what} set by "
                             "the hardware's walk when the access retries")
            elif c.space == "ma" and not c.new:
                kinds.append(f"{c.name} dropped (not present)")
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
