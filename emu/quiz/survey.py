"""How varied and how right the quiz is, over many seeds.

    python -m emu.quiz.survey [--seeds N] [--kind K ...] [--no-check]

For each kind, problems 1 of seeds 0..N-1 (the difficulty cycling 1, 2, 3)
are generated and solved; it prints how many are distinct (and how many
of seeds 0..N-1 at each difficulty alone), which cases
their answers cover (and which of the cases each kind must cover are
missing), how many are degenerate, and, unless --no-check, how many
disagree with the emulator run another way (``crosscheck.py``).  The exit
status is 1 if anything is missing, degenerate or disagrees.  The test
suite runs the same functions on fewer seeds (tests/test_quiz_sweep.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import Counter

from . import DIFFICULTIES, KINDS, make, work
from .harness import Access, Invlpg, Reload

# The cases each kind's answers must cover over enough seeds.
REQUIRED = {
    "translate": {"pa:read", "pa:write", "pa:fetch", "pa:4M", "pf:0x0", "pf:0x2", "pf:0x3",
                  "pf:0x4", "pf:0x5", "pf:0x6", "pf:0x7", "pf:rsvd",
                  *(f"{fate}:{op}:{who}" for fate in ("pa", "pf")
                    for op in ("read", "write", "fetch") for who in ("user", "kernel"))},
    "six-steps": {"outcome:tlb-hit", "outcome:shadow-walk", "outcome:hidden", "outcome:true",
                  "outcome:dirty", "outcome:tracing", "outcome:wp-emulate", "ec:0x0", "ec:0x2",
                  "ec:0x3", "ec:0x4", "ec:0x5", "ec:0x6", "ec:0x7", "ec:rsvd"},
    "nested-walk": {"outcome:tlb-hit", "outcome:tlb-fill", "outcome:ept-violation",
                    "outcome:page-fault", "refs:8", "refs:5", "ntlb-hit"},
    "tlb": {"hit", "miss:free", "miss:evict", "policy:lru:evict", "policy:fifo:evict",
            "global:survives-reload", "invlpg:misses"},
    "ad-shadow": {"exit:none", "exit:hidden", "exit:dirty", "bits:A0D0", "bits:A0D1",
                  "bits:A1D0", "bits:A1D1", "gpde:A-set"},
    "cost": {"winner:shadow", "winner:nested", "shadow:vm_exit", "shadow:vmm_cr3",
             "shadow:vmm_emulate", "nested:vmm_fill_nested"},
}


def canonical(obj):
    """A hashable value equal for equal specs, whatever their dicts' order."""
    if dataclasses.is_dataclass(obj):
        return (type(obj).__name__,) + tuple(
            canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return tuple(sorted((canonical(k), canonical(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(canonical(x) for x in obj)
    return obj


def cases(problem) -> set[str]:
    """The cases this problem's answer shows (the names in REQUIRED)."""
    w = work(problem)
    a, spec, out = w.answer, problem.spec, set()
    if problem.kind == "translate":
        for acc, ans in zip(spec.accesses, a["accesses"]):
            who = "user" if acc.user else "kernel"
            out.add(f"{'pa' if 'pa' in ans else 'pf'}:{acc.op}:{who}")
            if "pa" in ans:
                out.add(f"pa:{acc.op}")
                gpde = spec.layout.pdes.get(acc.va >> 22, 0)
                if spec.layout.pse and gpde & 0x80:
                    out.add("pa:4M")
            else:
                ec = ans["error_code"]
                out.add("pf:rsvd" if ec & 8 else f"pf:{ec:#x}")
    elif problem.kind == "six-steps":
        out.add(f"outcome:{a['outcome']}")
        if a["error_code"] is not None:
            ec = a["error_code"]
            out.add("ec:rsvd" if ec & 8 else f"ec:{ec:#x}")
    elif problem.kind == "nested-walk":
        out |= {f"outcome:{a['outcome']}", f"refs:{a['refs']}"}
        if a["outcome"] in ("tlb-fill", "ept-violation") and a["refs"] not in (8, 5, 7, 4):
            out.add("ntlb-hit")
    elif problem.kind == "tlb":
        out |= _tlb_cases(problem, a)
    elif problem.kind == "ad-shadow":
        out |= {f"exit:{e}" for e in a["exits"]}
        out |= {f"bits:A{int(b['a'])}D{int(b['d'])}" for b in a["gptes"]}
        for pdx, now in zip(sorted(spec.layout.pdes), a["gpdes"]):
            if now and not spec.layout.pdes[pdx] & 0x20:
                out.add("gpde:A-set")
    elif problem.kind == "cost":
        out.add(f"winner:{a['winner']}")
        out |= {f"{m}:{k}" for m, c in a["cycles"].items() for k, v in c.items() if v}
    return out


def _tlb_cases(problem, a) -> set[str]:
    from .tlbkind import simulate
    results, _ = simulate(problem.spec)
    out = set()
    last_use: dict[int, int] = {}
    events: list = []          # (step index, what) of reloads and invlpgs
    results = iter(results)
    for i, step in enumerate(problem.spec.steps):
        if isinstance(step, Reload):
            events.append((i, "reload", None))
            continue
        if isinstance(step, Invlpg):
            events.append((i, "invlpg", step.va >> 12))
            continue
        hit, _, victim = next(results)
        vpn = step.va >> 12
        since = [e for e in events if e[0] > last_use.get(vpn, i)]
        if hit:
            out.add("hit")
            if any(e[1] == "reload" for e in since):
                out.add("global:survives-reload")
        else:
            out.add("miss:evict" if victim is not None else "miss:free")
            if victim is not None:
                out.add(f"policy:{problem.spec.policy}:evict")
            if any(e[1] == "invlpg" and e[2] == vpn for e in since) and vpn in last_use:
                out.add("invlpg:misses")
        last_use[vpn] = i
    return out


def degenerate(problem) -> str | None:
    """Why this problem is too trivial to pose, or None."""
    w = work(problem)
    a, spec = w.answer, problem.spec
    if problem.kind == "translate":
        faults = sum("error_code" in x for x in a["accesses"])
        if faults in (0, len(a["accesses"])):
            return "every access has the same fate"
    elif problem.kind == "tlb":
        if "hit" not in a["accesses"] or "miss" not in a["accesses"]:
            return "all hits or all misses"
    elif problem.kind == "six-steps":
        if not spec.before:
            return "nothing ran before the question"
    elif problem.kind == "ad-shadow":
        if len(set(a["exits"])) < 2:
            return "every access has the same exit"
    elif problem.kind == "cost":
        if sum(a["cycles"]["shadow"].values()) == sum(a["cycles"]["native"].values()):
            return "nothing costs a VMM anything"
    elif problem.kind == "nested-walk":
        if not any(isinstance(s, Access) for s in spec.before):
            return "no access before the question"
    return None


def distinct(kind: str, seeds, difficulty: int) -> int:
    """How many different problems 1 of ``seeds`` are, at one difficulty."""
    return len({canonical(make(kind, seed, 1, difficulty).spec) for seed in seeds})


def survey(kind: str, seeds, check: bool = True):
    """(distinct specs, case counts, degenerate list, disagreements list)."""
    from .crosscheck import CHECKS
    specs, counts, bad, wrong = set(), Counter(), [], []
    for seed in seeds:
        try:
            problem = make(kind, seed, 1, seed % 3 + 1)
            specs.add(canonical(problem.spec))
            counts.update(cases(problem))
            why = degenerate(problem)
            if why:
                bad.append((seed, why))
            found = CHECKS[kind](problem) if check else []
        except Exception as e:          # a bug: counted, and the survey goes on
            found = [f"{type(e).__name__}: {e}"]
        if found:
            wrong.append((seed, found))
    return specs, counts, bad, wrong


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emu.quiz.survey", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--seeds", type=int, default=1000, help="seeds per kind (default 1000)")
    p.add_argument("--kind", action="append", choices=list(KINDS),
                   help="a kind to survey (default: all; may be repeated)")
    p.add_argument("--no-check", action="store_true",
                   help="do not run each problem's program again to compare")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    status = 0
    for kind in args.kind or list(KINDS):
        t0 = time.perf_counter()
        specs, counts, bad, wrong = survey(kind, range(args.seeds), not args.no_check)
        missing = sorted(REQUIRED[kind] - set(counts))
        each = [distinct(kind, range(args.seeds), d) for d in DIFFICULTIES]
        seconds = time.perf_counter() - t0
        print(f"{kind}: {args.seeds} problems, {len(specs)} distinct "
              f"({'/'.join(map(str, each))} at difficulty 1/2/3 alone), "
              f"{len(bad)} degenerate, "
              + ("" if args.no_check else f"{len(wrong)} disagreeing with the emulator, ")
              + f"{seconds:.1f} s")
        print(f"  required cases: {len(REQUIRED[kind]) - len(missing)} of "
              f"{len(REQUIRED[kind])} seen")
        print("  cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if missing:
            print("  MISSING: " + ", ".join(missing))
        for seed, why in bad[:5]:
            print(f"  degenerate: seed {seed}: {why}")
        for seed, found in wrong[:5]:
            print(f"  DISAGREES: seed {seed}: {found[0]}")
        if missing or bad or wrong or len(specs) != args.seeds or \
                any(n != args.seeds for n in each):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
