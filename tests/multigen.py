"""Random groups of guests on one small machine, for the multi-VM stress test.

``groups()`` is a hypothesis strategy of ``Group``: two to five guests and a
machine to run them on together.  A guest (``Member``) is one of

* a bundled teaching guest (``emu list``; not ``bad_runaway``, whose end is
  its cycle budget);
* a random paging kernel from ``guestgen`` (its own page tables, faults,
  invalidations: the equivalence property's guests);
* a memory-hungry kernel (``memhog``): paging off, it writes ``i + round``
  to the dword at ``OFF`` of ``pages`` pages, ``rounds`` times, then reads
  every page back and prints (and exits with) the number of pages that do
  not hold ``i + rounds - 1``.  Its right answer is known without running
  it (0), so it checks the machine against a plain model of memory.

and the machine is drawn too: 1 to 8 MiB of machine memory (each guest has
16 MiB of RAM: the machine is overcommitted), a swap latency of 0, 1, 100
cycles or the default, a sharing scan every 2,000 or 20,000 cycles, the
default or never, a TLB shape, and a VMM: each shadow policy or nested
paging.

``check(group)`` runs the group together (``emu.multi.build``, one simpy
environment) with the resource-control invariant checked after every exit,
and each guest alone on the same machine ("solo"), and returns the
failures:

* **violation**: an ``InvariantError`` (or any other exception) out of a run;
* **divergence**: a guest's guest-visible result together is not its solo
  result (the instruction clock makes every guest-visible figure independent
  of timing: console, exit status, registers, instructions retired, memory);
  or a memhog that reports lost pages;
* **stall**: a guest that retires no instruction for a whole window, or
  that ends at its cycle budget together when alone it finishes.  The
  window is the solo cycles of all the guests added up (at least
  ``STALL_WINDOW``): a guest that waits longer than it would take to run
  everybody's work one after the other is starved, not slowed.  The budget
  together is ``BUDGET_FACTOR`` times that sum (at least twice the window),
  plus ``THRASH_ALLOWANCE`` for each guest: sharing one machine slows each
  guest down by the others' work and by the paging their working sets
  cause.  A crowd whose working sets together are larger than the machine
  pages at disk speed (eight ``multiproc`` on 1 MiB: about 11,000 page
  transfers, 470 M cycles, against 2 M alone): slowed, not stalled, as
  long as every guest keeps retiring instructions within the window.

A guest whose solo run itself ends at the budget (a working set far larger
than the machine, paged at disk speed) cannot be compared: it is counted
(``unbounded``) and checked for violations only.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from hypothesis import strategies as st

MEM_MIB = 16                        # every guest's RAM
STALL_WINDOW = 50_000_000           # cycles without one retired instruction: a stall
BUDGET_FACTOR = 8                   # group budget: this times all solo cycles together
THRASH_ALLOWANCE = 100_000_000      # ... plus this for each guest (about 4,700 page transfers)
SOLO_BUDGET = 200_000_000           # a solo run's budget (the default)
DEFAULT_LATENCY = 20_000            # Config.swap_latency's default
DEFAULT_SHARE = 200_000             # emu.multi.DEFAULT_SHARE_INTERVAL
LATENCIES = (DEFAULT_LATENCY, 0, 1, 100)
SHARE_INTERVALS = (0, 2000, 20_000, DEFAULT_SHARE)
TLBS = ((64, 4, "split", 8), (8, 2, "split", 1), (4, 4, "unified", 2), (16, 1, "unified", 4))
# the guests with the most pages and address spaces (crowds draw them twice as often)
HEAVY_BUNDLED = ("multiproc", "pager", "forkwait", "demand", "mprotect", "tlbthrash",
                 "bigpages", "lab_swap")
SHORT_BUNDLED = ("hello", "paging", "stale_tlb", "exceptions", "syscalls", "bad_triple",
                 "bad_cr3_outside", "bad_pt_outside", "mprotect", "demand")

MEMHOG = """\
; memhog: {pages} pages, {rounds} rounds: page i gets i + round at offset {off:#x}
%include "kernel.inc"
KSTACK_TOP  equ 0x80000
BASE        equ {base:#x}
org 0x1000
_start:
    mov esp, KSTACK_TOP
    mov ebx, 0                      ; round
.round:
    mov ecx, 0
.write:
    mov edx, ecx
    shl edx, 12
    lea eax, [ecx + ebx]
    mov [BASE + {off:#x} + edx], eax
    inc ecx
    cmp ecx, {pages}
    jne .write
    inc ebx
    cmp ebx, {rounds}
    jne .round
    mov ecx, 0
    mov edi, 0                      ; pages that lost their value
.read:
    mov edx, ecx
    shl edx, 12
    mov eax, [BASE + {off:#x} + edx]
    lea esi, [ecx + {last}]
    cmp eax, esi
    je .good
    inc edi
.good:
    inc ecx
    cmp ecx, {pages}
    jne .read
    mov eax, edi
    call print_dec
    call newline
    mov eax, edi
    out POWER, eax

trap:                               ; no trap is expected: report it
    mov eax, 1000
    add eax, [esp + 4]
    out POWER, eax

%include "lib.inc"
"""


# --- groups -------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    """One guest of a group."""

    kind: str                       # bundled | paging | memhog
    name: str                       # bundled: the program; otherwise a label
    source: str = ""                # paging: the kernel's assembly text
    pages: int = 0                  # memhog
    rounds: int = 0
    base: int = 0x400000
    off: int = 0xFFC

    def text(self) -> tuple[str, str]:
        """(source text, source name) of this guest."""
        from emu import programs
        if self.kind == "bundled":
            path = programs.resolve(self.name)
            with open(path, encoding="utf-8") as fh:
                return fh.read(), path
        if self.kind == "memhog":
            return MEMHOG.format(pages=self.pages, rounds=self.rounds, base=self.base,
                                 off=self.off, last=self.rounds - 1), self.name + ".s"
        return self.source, self.name + ".s"

    def image(self):
        from emu import programs
        from emu.asm import assemble
        text, name = self.text()
        return assemble(text, name, include_dirs=[str(programs.include_dir())])

    def to_json(self) -> dict:
        out = {"kind": self.kind, "name": self.name}
        if self.kind == "paging":
            out["source"] = self.source
        if self.kind == "memhog":
            out.update(pages=self.pages, rounds=self.rounds, base=self.base, off=self.off)
        return out


@dataclass(frozen=True)
class Group:
    """Guests and the machine they share."""

    members: tuple[Member, ...]
    mode: str = "shadow"
    policy: str | None = "trace-cache"
    machine_mib: int = 4
    swap_latency: int = DEFAULT_LATENCY
    share_interval: int = 0
    tlb: tuple = TLBS[0]

    def config(self, max_cycles: int = SOLO_BUDGET):
        from emu.system import Config
        entries, ways, kind, large = self.tlb
        return Config(mode=self.mode, shadow_policy=self.policy or "trace-cache",
                      mem_mib=MEM_MIB, machine_mib=self.machine_mib,
                      swap_latency=self.swap_latency, share_interval=self.share_interval,
                      tlb_entries=entries, tlb_ways=ways, tlb_kind=kind, tlb_large=large,
                      check_invariants=True, max_cycles=max_cycles)

    def names(self) -> list[str]:
        return [f"vm{i}-{m.name}" for i, m in enumerate(self.members)]

    def describe(self) -> str:
        vmm = self.mode + (f"/{self.policy}" if self.mode == "shadow" else "")
        return (f"{len(self.members)} guests ({', '.join(m.name for m in self.members)}) on "
                f"{self.machine_mib} MiB, {vmm}, swap latency {self.swap_latency}, "
                f"share interval {self.share_interval}, TLB {self.tlb}")

    def to_json(self) -> dict:
        out = asdict(self)
        out["members"] = [m.to_json() for m in self.members]
        out["tlb"] = list(self.tlb)
        return out

    @classmethod
    def from_json(cls, data: dict) -> Group:
        members = tuple(Member(**m) for m in data["members"])
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields.update(members=members, tlb=tuple(data.get("tlb", TLBS[0])))
        return cls(**fields)


def memhog(pages: int, rounds: int, off: int = 0xFFC, base: int = 0x400000) -> Member:
    return Member("memhog", f"memhog{pages}x{rounds}", pages=pages, rounds=rounds, base=base,
                  off=off)


# --- running ------------------------------------------------------------------------------
class Stall(Exception):
    """A guest made no progress."""


@dataclass
class Report:
    """What running a group found."""

    group: Group
    failures: list[str] = field(default_factory=list)
    violations: int = 0
    divergences: int = 0
    stalls: int = 0
    runs: int = 0
    invariant_checks: int = 0
    unbounded: int = 0
    seconds: float = 0.0

    def fail(self, kind: str, text: str) -> None:
        setattr(self, kind + "s", getattr(self, kind + "s") + 1)
        self.failures.append(f"{kind}: {text}")


_SOLO_CACHE: dict = {}


def _checks(system) -> int:
    return getattr(system.vmm, "invariant_checks", 0) if system.vmm is not None else 0


def _every(full, every: int):
    count = iter(range(1, 1 << 62))

    def sampled(*args):
        if next(count) % every == 0:
            full(*args)
    return sampled


def _sample(systems, every: int) -> None:
    """Check the invariants after every ``every``-th exit of each system
    and every ``every``-th host event instead of after each one
    (``check_final`` checks the end state)."""
    if every <= 1:
        return
    hosts = {}
    for s in systems:
        full = s.vmm.check
        if full is not None:
            s.vmm.check = _every(full, every)
            s.full_check = full
        host = getattr(s, "host", None)
        if host is not None and getattr(host, "check", None) is not None:
            hosts[id(host)] = host
    for host in hosts.values():
        host.check = _every(host.check, every)


def check_final(systems) -> None:
    """The invariant on the state each system ended in."""
    for s in systems:
        full = getattr(s, "full_check", None) or (s.vmm.check if s.vmm else None)
        if full is not None:
            full()


def run_solo(member: Member, group: Group, report: Report, every: int = 1):
    """The member alone on the group's machine: its Result (None if the run
    raised; the report has it)."""
    from emu.system import System
    key = (member, group.mode, group.policy, group.machine_mib, group.swap_latency,
           group.share_interval, group.tlb, every)
    if key in _SOLO_CACHE:
        return _SOLO_CACHE[key]
    report.runs += 1
    system = None
    try:
        system = System(member.image(), group.config(), name=member.name)
        _sample([system], every)
        result = system.run()
        check_final([system])
    except Exception as e:          # an invariant violation or an internal error
        report.fail("violation", f"{member.name} alone: {type(e).__name__}: {e}")
        result = None
    if system is not None:
        report.invariant_checks += _checks(system)
    if len(_SOLO_CACHE) > 512:
        _SOLO_CACHE.clear()
    _SOLO_CACHE[key] = result
    return result


def _watch(env, systems, window: int):
    """A simpy process: raises ``Stall`` when an unfinished guest retires no
    instruction for ``window`` cycles."""
    last = {s.name: (s.cpu.icount, env.now) for s in systems}
    while True:
        yield env.timeout(window // 4)
        for s in systems:
            if s.finished:
                continue
            count, since = last[s.name]
            if s.cpu.icount != count:
                last[s.name] = (s.cpu.icount, env.now)
            elif env.now - since >= window:
                raise Stall(f"{s.name} retired no instruction from cycle {int(since):,} to "
                            f"{int(env.now):,} (after {count:,} instructions)")


def run_group(group: Group, budget: int, window: int, report: Report, every: int = 1):
    """Run the group together; [(name, Result)] (None if the run raised)."""
    from emu.multi import build
    report.runs += 1
    images = [m.image() for m in group.members]
    host, systems = build(images, group.names(), group.config(budget))
    _sample(systems, every)
    out = None
    try:
        host.start()
        processes = [s.start() for s in systems]
        host.env.process(_watch(host.env, systems, window))
        host.env.run(until=host.env.all_of(processes))
        check_final(systems)
        out = [(s.name, s.result()) for s in systems]
    except Stall as e:
        report.fail("stall", str(e))
    except Exception as e:
        report.fail("violation", f"together: {type(e).__name__}: {e}")
    report.invariant_checks += sum(_checks(s) for s in systems)
    return out


def check(group: Group, every: int = 1) -> Report:
    """Run ``group`` together and each guest alone; the report's failures
    list every violation, divergence and stall (see the module doc).
    ``every``: check the invariant after every ``every``-th exit (and at
    the end) rather than after each one, which is slow."""
    t0 = time.perf_counter()
    report = Report(group)
    solos = [run_solo(m, group, report, every) for m in group.members]
    if report.failures:
        report.seconds = time.perf_counter() - t0
        return report
    bounded = [r.cycles for r in solos if r.outcome != "budget"]
    report.unbounded = len(solos) - len(bounded)
    window = max(sum(bounded), STALL_WINDOW)
    budget = BUDGET_FACTOR * window + THRASH_ALLOWANCE * len(group.members)
    together = run_group(group, budget, window, report, every)
    for m, solo, (name, r) in zip(group.members, solos, together or ()):
        if solo.outcome == "budget":
            continue
        if r.outcome == "budget":
            report.fail("stall", f"{name} ran out of its budget of {budget:,} cycles together "
                        f"after {r.instructions:,} instructions; alone it ends ({solo.outcome}) "
                        f"after {solo.instructions:,} instructions and {solo.cycles:,} cycles")
            continue
        want, got = solo.guest_visible(), r.guest_visible()
        bad = [k for k in want if want[k] != got[k]]
        if bad:
            report.fail("divergence", f"{name} differs from its solo run in {', '.join(bad)}"
                        + "".join(f"; {k} {got[k]!r} != {want[k]!r}" for k in bad
                                  if k in ("outcome", "exit_status", "console",
                                           "instructions"))[:400])
        if m.kind == "memhog" and (r.outcome, r.exit_status) != ("poweroff", 0):
            report.fail("divergence", f"{name} lost pages: {r.console.strip()!r} "
                        f"({r.outcome}, status {r.exit_status})")
    report.seconds = time.perf_counter() - t0
    return report


# --- the strategies -------------------------------------------------------------------------
def bundled_names(short: bool) -> tuple[str, ...]:
    """The guests a member may be: the bundled ones and the lab's (long runs;
    ``short``: the suite's few quick ones)."""
    from emu import programs
    names = tuple(n for n, _ in programs.catalogue() if n != "bad_runaway")
    if short:
        return tuple(n for n in SHORT_BUNDLED if n in names)
    return names + tuple(n for n, _ in programs.lab_catalogue())


@st.composite
def members(draw, short: bool = False) -> Member:
    kind = draw(st.sampled_from(("memhog", "bundled", "paging")))
    if kind == "memhog":
        pages = draw(st.integers(8, 160 if short else 700))
        return memhog(pages, draw(st.integers(1, 3)),
                      draw(st.sampled_from((0xFFC, 0, 0x800))),
                      draw(st.sampled_from((0x400000, 0x800000, 0x100000))))
    if kind == "bundled":
        return Member("bundled", draw(st.sampled_from(bundled_names(short))))
    import guestgen
    prog = guestgen.compile_plan(draw(guestgen.plans(max_ops=6 if short else 24)))
    return Member("paging", prog.name, prog.source)


VMMS = (("shadow", "trace-cache"), ("shadow", "trace-drop"), ("shadow", "oos-cache"),
        ("shadow", "oos-drop"), ("nested", None))


@st.composite
def crowds(draw) -> Group:
    """Copies of one to three bundled guests, up to sixteen VMs, on 1 or 2
    MiB: their identical pages (kernels, page tables) are shared, broken
    apart and reclaimed all the time, and VMs end while others run (a
    shared page freed and shared anew in the middle of its write to the
    disk was found so, and VMs starving beside the memory of those that
    had ended)."""
    names = draw(st.lists(st.sampled_from(HEAVY_BUNDLED + bundled_names(False)),
                          min_size=1, max_size=3))
    copies = draw(st.integers(max(2, 8 // len(names)), 16 // len(names)))
    mode, policy = draw(st.sampled_from(VMMS))
    return Group(tuple(Member("bundled", n) for _ in range(copies) for n in names),
                 mode, policy, draw(st.sampled_from((1, 1, 2))), draw(st.sampled_from(LATENCIES)),
                 draw(st.sampled_from((20_000, 100_000, DEFAULT_SHARE))),
                 draw(st.sampled_from(TLBS)))


@st.composite
def groups(draw, short: bool = False) -> Group:
    if not short and draw(st.integers(0, 3)) == 0:
        return draw(crowds())
    mode, policy = draw(st.sampled_from(VMMS))
    return Group(tuple(draw(st.lists(members(short), min_size=2, max_size=3 if short else 5))),
                 mode, policy, draw(st.integers(1, 8)), draw(st.sampled_from(LATENCIES)),
                 draw(st.sampled_from(SHARE_INTERVALS)), draw(st.sampled_from(TLBS)))


# --- regressions ----------------------------------------------------------------------------
def save(group: Group, why: str, path) -> None:
    """Write ``group`` as a regression data file (JSON)."""
    data = {"why": why.splitlines()[0][:300], **group.to_json()}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


def load(path) -> tuple[Group, dict]:
    """A saved group and the file's other fields (why, xfail)."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return Group.from_json(data), data
