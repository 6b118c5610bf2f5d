"""One guest image in several configurations, compared on what the guest sees.

    cmp = compare(image, configurations(Config()))
    cmp.identical            # True: every run gave the reference's result
    cmp.mismatches           # ["shadow oos-drop: console differs from native", ...]

The first configuration is the reference (native, in the standard set);
every other run must give the guest-visible result it gives
(``Result.guest_visible()``: outcome, exit status, instructions retired,
console, registers, guest memory).  ``emu compare``, the fuzzer and the
tests all compare through here.  Two runs that both ran out of their cycle
budget are not compared: the budget is in cycles, and a VMM's work takes
some of them, so a runaway guest stops at a different instruction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .system import Config, Result, System
from .vmm.shadow import POLICIES

Runner = Callable[[str, Config], Result]


def configurations(base: Config | None = None, modes: Iterable[str] | None = None,
                   policies: Iterable[str] | None = None) -> list[tuple[str, Config]]:
    """The standard set, native first: native, shadow paging under each
    policy, nested paging.  ``modes`` keeps only those modes (native is
    always kept: it is the reference); ``policies`` only those shadow
    policies.  Labels: ``native``, ``shadow trace-cache`` ..., ``nested``."""
    base = base or Config()
    modes = set(modes) if modes is not None else {"shadow", "nested"}
    policies = list(policies) if policies is not None else list(POLICIES)
    out = [("native", base.with_(mode="native"))]
    if "shadow" in modes:
        out += [(f"shadow {p}", base.with_(mode="shadow", shadow_policy=p)) for p in policies]
    if "nested" in modes:
        out.append(("nested", base.with_(mode="nested")))
    return out


def differences(reference: Result, other: Result, tolerate: Sequence[str] = ()) -> list[str]:
    """The guest-visible fields in which ``other`` differs from
    ``reference`` (none when both ran out of budget), ``tolerate`` aside."""
    if reference.outcome == other.outcome == "budget":
        return []
    want, got = reference.guest_visible(), other.guest_visible()
    return [key for key in want if got[key] != want[key] and key not in tolerate]


@dataclass
class Comparison:
    """The runs, in the order of the configurations, and what differed
    (in a notebook it shows as ``emu compare``'s table and chart)."""

    runs: list[tuple[str, Result]]
    mismatches: list[str] = field(default_factory=list)   # one line per differing field
    configs: list[tuple[str, Config]] = field(default_factory=list)
    program: str = ""       # what was compared, for titles

    @property
    def reference(self) -> Result:
        return self.runs[0][1]

    native = reference          # the standard set's reference is the native run

    @property
    def identical(self) -> bool:
        return not self.mismatches

    def result(self, label: str) -> Result:
        for name, r in self.runs:
            if name == label:
                return r
        raise KeyError(label)


def run_config(image, config: Config) -> Result:
    """The default runner: a fresh machine for each configuration."""
    return System(image, config).run()


def compare(image, configs: Sequence[tuple[str, Config]] | None = None, *,
            run: Callable | None = None, tolerate: Sequence[str] = (),
            progress: Callable[[int, int, str], None] | None = None,
            program: str | None = None) -> Comparison:
    """Run ``image`` in each of ``configs`` ((label, Config) pairs; default:
    ``configurations()``) and compare what the guest saw with the first.

    ``run(image, config) -> Result`` runs one configuration (default: a
    fresh ``System``; the fuzzer passes one with a deadline);
    ``progress(i, n, label)`` is called before run ``i`` of ``n``;
    ``tolerate``: guest-visible fields not compared."""
    configs = list(configs) if configs is not None else configurations()
    if not configs:
        raise ValueError("compare needs at least one configuration")
    run = run or run_config
    runs = []
    name = program if program is not None else os.path.basename(getattr(image, "source_name", ""))
    for i, (label, config) in enumerate(configs):
        if progress is not None:
            progress(i, len(configs), label)
        try:
            runs.append((label, run(image, config)))
        except KeyboardInterrupt:
            if not runs:
                raise
            raise Interrupted(_compared(runs, configs[:len(runs)], tolerate, name),
                              len(configs)) from None
    return _compared(runs, configs, tolerate, name)


def _compared(runs, configs, tolerate, name: str) -> Comparison:
    reference_label, reference = runs[0]
    mismatches = [f"{label}: {key} differs from {reference_label}"
                  for label, r in runs[1:] for key in differences(reference, r, tolerate)]
    return Comparison(runs, mismatches, list(configs), program=name)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a comparison: ``comparison`` holds the configurations
    that had finished (at least one), of ``total``."""

    def __init__(self, comparison: Comparison, total: int):
        super().__init__()
        self.comparison = comparison
        self.total = total


__all__ = ["Comparison", "Interrupted", "compare", "configurations", "differences", "run_config"]
