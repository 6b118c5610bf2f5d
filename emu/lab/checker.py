"""``emu lab check``: run a level's guests under the student's VMM.

Each test runs the guest natively (the reference) and under the student's
VMM, checked exit by exit by the referee (``referee.py``); the test passes
when no rule is broken and the guest's console, exit status and outcome
are native's.  A student's exception, an endless loop in a handler or a
guest that no longer finishes fails the test with one line that says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..errors import EmuError
from ..programs import assemble_file, resolve
from ..simenv import Environment
from ..system import Config, System
from ..vmm.api import VmmError
from ..vmm.host import Host
from .checked import checked
from .levels import LEVELS, Case, Level
from .loader import interrupts_seen, student_error
from .referee import Finding, Referee, Violation

GUESTS = Path(__file__).parent / "guests"
GENERATED = "gen-"
BUDGET_FACTOR = 20              # the student's run may take 20x native's cycles (+ slack)
SWAP_BUDGET = 2_000_000_000


@dataclass
class TestResult:
    level: int
    test: str
    passed: bool
    finding: Finding | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = {"level": self.level, "test": self.test, "passed": self.passed,
               "seconds": round(self.seconds, 3)}
        if self.finding is not None:
            out.update(step=self.finding.step, message=self.finding.message)
        return out


@dataclass
class LevelResult:
    level: Level
    tests: list[TestResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def ok(self) -> bool:
        return self.passed == len(self.tests)


def guest_path(name: str) -> str:
    lab = GUESTS / f"{name}.s"
    return str(lab) if lab.exists() else resolve(name)


@lru_cache(maxsize=64)
def image_of(name: str):
    if name.startswith(GENERATED):        # gen-LEVEL-SEED: a generated kernel (gen.py)
        from ..asm import assemble
        from ..programs import include_dir
        from .gen import source
        level, seed = (int(x) for x in name[len(GENERATED):].split("-"))
        return assemble(source(seed, level), f"{name}.s", [str(GUESTS), str(include_dir())])
    return assemble_file(guest_path(name), [str(GUESTS)])


@lru_cache(maxsize=64)
def native(name: str):
    return System(image_of(name), Config(mode="native")).run()


@lru_cache(maxsize=64)
def builtin_exits(name: str, policy: str) -> int:
    r = System(image_of(name), Config(mode="shadow", shadow_policy=policy)).run()
    return r.stats["vmm"]["exits"].get("pf", 0)


def check(vmm_class, levels: list[int], path: str | None = None,
          progress=None) -> list[LevelResult]:
    """Run ``levels`` (numbers) with ``vmm_class``; one result per level.
    ``path``: the student's file, for the lines their errors name;
    ``progress(level, test)`` is called before each test."""
    if path is None:
        path = getattr(vmm_class, "source_path", None)
    out = []
    for lv in LEVELS:
        if lv.number in levels:
            result = LevelResult(lv)
            for t in lv.tests:
                if progress is not None:
                    progress(lv, t)
                result.tests.append(run_test(vmm_class, lv, t, path))
            out.append(result)
    return out


def run_test(vmm_class, lv: Level, test: Case, path: str | None) -> TestResult:
    t0 = time.perf_counter()
    finding = _run(vmm_class, lv, test, path)
    return TestResult(lv.number, test.name, finding is None, finding, time.perf_counter() - t0)


def _run(vmm_class, lv: Level, test: Case, path: str | None) -> Finding | None:
    ref = native(test.guest)
    # Swapping takes the disk's time: a machine too small gets a budget to match.
    budget = SWAP_BUDGET if test.machine_mib else ref.cycles * BUDGET_FACTOR + 10_000_000
    config = Config(mode="shadow", shadow_policy=lv.policy, machine_mib=test.machine_mib,
                    max_cycles=budget,
                    check_invariants=test.vms > 1)
    referees = [Referee(lv.rules) for _ in range(test.vms)]
    try:
        with interrupts_seen() as seen:
            systems = _build(vmm_class, referees, config, test)
            results = _run_all(systems)
    except KeyboardInterrupt as e:
        if seen.count:                  # a Ctrl-C: the grading stops
            raise
        return _crashed(e, path, referees)      # raised by the VMM's own code
    except Violation as v:
        return v.finding
    except VmmError as e:            # an API rule: set_spte's isolation check ...
        text = str(e)
        step, _, rest = text.partition(": ")
        return Finding(step, rest) if step == "isolation" else Finding("API", text)
    except AssertionError as e:      # the resource-control invariant
        return Finding("isolation", str(e).splitlines()[0])
    except EmuError as e:
        return Finding("run", str(e))
    except (Exception, SystemExit) as e:  # noqa: BLE001  (the student's code raised it)
        return _crashed(e, path, referees)
    for i, r in enumerate(results):
        who = f"VM {i + 1}: " if test.vms > 1 else ""
        if r.outcome == "budget":
            return Finding("run", f"{who}the guest did not finish within {config.max_cycles:,} "
                           f"cycles (natively it takes {ref.cycles:,})")
        diff = _differs(ref, r)
        if diff:
            return Finding("output", who + diff)
    if test.efficiency is not None:
        mine = sum(s.vmm.exits.get("pf", 0) for s in systems)
        theirs = builtin_exits(test.guest, lv.policy) * test.vms
        if mine > test.efficiency * theirs + 10:
            return Finding(lv.title, f"the guest took {mine:,} #PF exits, where the built-in "
                           f"VMM takes {theirs:,} with the {lv.policy} policy: "
                           f"at most {test.efficiency:g}x that is expected ({lv.writes})")
    return None


def _crashed(e: BaseException, path: str | None, referees) -> Finding:
    doing = next((r.doing for r in referees if r.doing is not None), None)
    where, exit_text = doing if doing is not None else ("your VMM", "")
    during = f" ({exit_text})" if exit_text else ""
    return Finding(where, student_error(e, path) + during)


def _build(vmm_class, referees, config: Config, test: Case) -> list[System]:
    image = image_of(test.guest)
    if test.vms == 1:
        return [System(image, config, vmm_class=checked(vmm_class, referees[0]))]
    env = Environment()
    host = Host(env, config.machine_bytes, reserve=config.reserve_pages,
                swap_latency=config.swap_latency, swap_bandwidth=config.swap_bandwidth,
                share_interval=config.share_interval)
    from ..vmm.host_invariants import check_host
    host.check = check_host
    return [System(image, config, host=host, name=f"vm{i + 1}",
                   vmm_class=checked(vmm_class, ref)) for i, ref in enumerate(referees)]


def _run_all(systems: list[System]):
    if len(systems) == 1:
        return [systems[0].run()]
    host = systems[0].host
    host.start()
    procs = [s.start() for s in systems]
    host.env.run(until=host.env.all_of(procs))
    return [s.result() for s in systems]


def _differs(ref, r) -> str | None:
    if r.console != ref.console:
        want, got = ref.console.splitlines(), r.console.splitlines()
        # (and how the run ended, where that differs too: a crash says why)
        ended = "" if (r.outcome, r.exit_status) == (ref.outcome, ref.exit_status) else \
            f"; the run ended: {r.outcome}, {r.message}"
        for n, (a, b) in enumerate(zip(want, got), 1):
            if a != b:
                return (f"the guest's console line {n} is {b!r}, natively {a!r}{ended}")
        n = min(len(want), len(got)) + 1
        if len(got) < len(want):
            return f"the guest's console stops before line {n} ({want[n - 1]!r}){ended}"
        return f"the guest prints more than natively: line {n} is {got[n - 1]!r}{ended}"
    if (r.outcome, r.exit_status) != (ref.outcome, ref.exit_status):
        return (f"the guest ended with {r.outcome} (status {r.exit_status}: {r.message}); "
                f"natively {ref.outcome} (status {ref.exit_status})")
    if r.outcome == "crash" and r.message != ref.message:
        return f"the guest crashed with '{r.message}'; natively '{ref.message}'"
    return None
