"""Checking a worked problem against the emulator run another way.

The solvers drive the problem's guest program with ``machine.Runner``;
here the same program runs the ordinary way (``System.run()`` with a
trace subscriber, what ``emu run --trace`` does), natively where the
hardware itself is the model (A/D bits, the TLB), or in the stepper's
session with breakpoints (``emu step``), and the answer is read off that
run instead.  Each function returns a list of disagreements (empty: the
quiz says what the emulator does).  The tests and ``python -m
emu.quiz.survey`` call them.
"""

from __future__ import annotations

from ..system import Config, System
from . import work
from .harness import MEM_MIB, Access, assemble_program
from .machine import config, go_to, session_at


def ordinary_run(source: str, cfg: Config, name: str = "quiz.s", counts=None):
    """Run ``source`` to its end with every trace event kept.  With
    ``counts`` (a list), ``counts[i]`` is the nested walker's count of table
    references (``stats()``: nested_refs + guest_refs, what ``--stats-json``
    prints) when event i happened."""
    system = System(assemble_program(source, name), cfg)
    events: list = []
    if counts is None:
        system.bus.subscribe(events.append)
    else:
        walker = system.mmu.walker

        def keep(ev):
            st = walker.stats()
            events.append(ev)
            counts.append(st["nested_refs"] + st["guest_refs"])
        system.bus.subscribe(keep)
    system.env.run(until=system.start())    # System.run() but for the memory's hash
    if (system.outcome, system.exit_status) != ("poweroff", 0):
        raise AssertionError(f"the quiz program ended with {system.outcome}: {system.message}")
    return system, events


def _after_marker(system, events):
    """The events after the marker's I/O exit (the question's)."""
    mark = system.image.symbols["m1"]
    for i, ev in enumerate(events):
        if ev.kind == "vm_exit" and ev.data.get("reason") == "io" and ev.data.get("eip") == mark:
            return events[i + 1:]
    raise AssertionError("no exit at the marker")


# --- the kinds ------------------------------------------------------------------------------
def translate(problem, modes=("native",)) -> list[str]:
    """The program prints each access's value (its pa) or error code; a write
    leaves its value at the pa."""
    w = work(problem)
    lines, writes = [], []
    for n, (a, ans) in enumerate(zip(problem.spec.accesses, w.answer["accesses"]), 1):
        if "error_code" in ans:
            lines.append(f"{n}: #PF error {ans['error_code']:#010x}")
        elif a.op == "write":
            lines.append(f"{n}: wrote")
            writes.append((ans["pa"], a.value))
        else:
            lines.append(f"{n}: {'read' if a.op == 'read' else 'fetched'} {ans['pa']:#010x}")
    want = "\n".join(lines) + "\n"
    out = []
    for mode in modes:
        system, _ = ordinary_run(w.program, Config(mode=mode, mem_mib=MEM_MIB))
        if system.console.text() != want:
            out.append(f"{mode}: the program printed {system.console.text()!r}, not {want!r}")
        for pa, value in writes:
            got = int.from_bytes(system.guest_read(pa, 4), "little")
            if got != value:
                out.append(f"{mode}: pa {pa:#010x} holds {got:#010x}, not {value:#010x}")
    return out


def six_steps(problem) -> list[str]:
    from .sixsteps import POLICY
    w = work(problem)
    q = problem.spec.question
    system, events = ordinary_run(w.program, config("shadow", shadow_policy=POLICY),
                                  "quiz-six-steps.s")
    after = _after_marker(system, events)
    addr = system.image.symbols[f"a{sum(isinstance(s, Access) for s in problem.spec.before) + 1}"]
    exits = [i for i, ev in enumerate(after) if ev.kind == "vm_exit" and ev.step == 2
             and ev.data.get("eip") == addr]
    a = w.answer
    out = []
    if not exits:
        walked = any(ev.kind == "shadow_walk" and ev.step is None and ev.va == q.va
                     for ev in after)
        got = "shadow-walk" if walked else "tlb-hit"
        if got != a["outcome"]:
            out.append(f"no exit: the run shows {got}, the quiz says {a['outcome']}")
        return out
    rest = after[exits[0] + 1:]
    kind = next((ev.kind[:-len("_fault")] for ev in rest
                 if ev.step == 3 and ev.kind.endswith("_fault")), None)
    if kind != a["outcome"]:
        out.append(f"the run classifies the exit as {kind}, the quiz says {a['outcome']}")
    entry = next((i for i, ev in enumerate(rest) if ev.kind == "vm_entry"), len(rest))
    inject = next((ev.data["error_code"] for ev in rest[:entry] if ev.kind == "inject"), None)
    if inject != a["error_code"]:
        out.append(f"the run injects {inject}, the quiz says {a['error_code']}")
    fill = next((ev.data["spte"] for ev in rest[:entry] if ev.kind == "shadow_fill"), None)
    if fill != (a["spte"] or {}).get("value"):
        out.append(f"the run fills spte {fill}, the quiz says {a['spte']}")
    return out


def nested_walk(problem) -> list[str]:
    """The walk the trace records (its grid) and, whatever the outcome, the
    number of table references the walker counted from the marker to the
    walk's end (a guest #PF has no walk event: only the count checks it)."""
    w = work(problem)
    q = problem.spec.question
    counts: list = []
    system, events = ordinary_run(w.program, config("nested", ntlb_entries=problem.spec.ntlb),
                                  "quiz-nested-walk.s", counts)
    after = _after_marker(system, events)
    counts = counts[len(events) - len(after) - 1:]      # from the marker's exit
    a = w.answer
    for i, ev in enumerate(after, 1):
        refs_counted = counts[i] - counts[0]
        if refs_counted != a["refs"] and ev.kind in ("nested_walk", "deliver"):
            return [f"the walker counts {refs_counted} references; the quiz says {a['refs']}"]
        if ev.kind == "nested_walk" and ev.va is not None and ev.va >> 12 == q.va >> 12:
            got = "ept-violation" if ev.step == 1 else "tlb-fill"
            refs = [{"what": col, "ma": ma} for _, col, ma, _ in ev.data["grid"]
                    if col in ("npde", "npte", "gpde", "gpte")]
            if (got, refs) != (a["outcome"], a["references"]):
                return [f"the run's walk: {got} {refs}; the quiz: {a['outcome']} "
                        f"{a['references']}"]
            return []
        if ev.kind == "deliver" and ev.data.get("vector") == 14 and ev.va == q.va:
            return [] if a["outcome"] == "page-fault" else \
                [f"the run faults; the quiz says {a['outcome']}"]
    return [] if a["outcome"] == "tlb-hit" else \
        [f"the run makes no walk; the quiz says {a['outcome']}"]


def tlb(problem) -> list[str]:
    """Natively: the misses the MMU reports, in order, and the data TLB's
    sets at the end, replacement order included."""
    w = work(problem)
    spec = problem.spec
    system, events = ordinary_run(w.program, Config(
        mode="native", mem_mib=MEM_MIB, tlb_entries=spec.entries, tlb_ways=spec.ways,
        tlb_policy=spec.policy))
    misses = [ev.va >> 12 for ev in events if ev.kind == "tlb_miss" and not ev.data.get("fetch")
              and ev.va >> 12 >= 0x400]
    accesses = [s for s in spec.steps if isinstance(s, Access)]
    want = [a.va >> 12 for a, r in zip(accesses, w.answer["accesses"]) if r == "miss"]
    out = []
    if misses != want:
        out.append(f"the run misses at {[hex(v) for v in misses]}, the quiz at "
                   f"{[hex(v) for v in want]}")
    sets = [[vpn << 12 for vpn in s] for s in system.dtlb.sets]
    if sets != w.answer["sets"]:
        out.append(f"the run's sets {sets}, the quiz's {w.answer['sets']}")
    return out


def ad_shadow(problem, modes=("native", "nested")) -> list[str]:
    """The A and D bits at the end are those the hardware sets itself."""
    from .adshadow import bits
    w = work(problem)
    out = []
    for mode in modes:
        system, _ = ordinary_run(w.program, config(mode), "quiz-ad-shadow.s")
        final = {pa: tuple(int.from_bytes(system.guest_read(pa + 4 * i, 4), "little")
                           for i in range(1024))
                 for pa in (problem.spec.layout.pd, *problem.spec.layout.tables)}
        pde_a, pte_ad = bits(problem.spec, final)
        got = {"gpdes": pde_a, "gptes": [{"a": x, "d": y} for x, y in pte_ad]}
        if got != {k: w.answer[k] for k in ("gpdes", "gptes")}:
            out.append(f"{mode}: the bits are {got}, the quiz says {w.answer}")
    return out


def ad_shadow_stepper(problem) -> list[str]:
    """Each access run by the stepper's session (``emu step``): its exit."""
    w = work(problem)
    image = assemble_program(w.program, "quiz-ad-shadow.s")
    accesses = [s for s in problem.spec.steps if isinstance(s, Access)]
    got = []
    s = session_at(image, config("shadow", shadow_policy=problem.spec.policy), "a1")
    for n in range(1, len(accesses) + 1):
        if n > 1:
            go_to(s, f"a{n}")
        first = s.nevents
        s.step(1)
        kinds = [s.event(i)[0].kind[:-len("_fault")] for i in range(first, s.nevents)
                 if s.event(i)[0].step == 3 and s.event(i)[0].kind.endswith("_fault")]
        got.append("+".join(kinds) or "none")
    return [] if got == w.answer["exits"] else \
        [f"the stepper shows exits {got}, the quiz says {w.answer['exits']}"]


def cost_stepper(problem, modes=("native", "shadow", "nested")) -> list[str]:
    """The stepper's session stopped at the trace's start and end: the
    difference of its cycles by category."""
    from .cost import labels
    w = work(problem)
    image = assemble_program(w.program, "quiz-cost.s")
    start, end = labels(problem.spec)
    out = []
    for mode in modes:
        s = session_at(image, config(mode), start)
        c0 = s.system.cycles_by_category()
        go_to(s, end)
        c1 = s.system.cycles_by_category()
        got = {k: c1.get(k, 0) - c0.get(k, 0) for k in c1 if c1.get(k, 0) - c0.get(k, 0)}
        want = {k: v for k, v in w.answer["cycles"][mode].items() if v}
        if got != want:
            out.append(f"{mode}: the stepper shows {got}, the quiz says {want}")
    return out


CHECKS = {"translate": translate, "six-steps": six_steps, "nested-walk": nested_walk,
          "tlb": tlb, "ad-shadow": ad_shadow, "cost": cost_stepper}
