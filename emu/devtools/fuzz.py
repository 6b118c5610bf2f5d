"""Fuzzing the front door: the assembler, the command line, garbage guests.

    python -m emu.devtools.fuzz --seconds 60 [--seed N] [--save DIR]

Round after round, until the time is up, it tries:

* the assembler (``assemble_file``) on random token soup, on the bundled
  guest programs mutated (lines deleted, duplicated, swapped; characters
  flipped; garbage, NUL bytes, invalid UTF-8 and unicode inserted), on
  binary garbage;
* the command line (``emu.cli.main``, in this process) on mutated programs
  run with a small cycle budget in a random mode, and on absurd options:
  negative numbers, 10**30, NaN-like and unicode strings, empty strings,
  missing and unwritable files;
* guests that run garbage: random bytes as code after a small kernel (an
  IDT whose handler skips a byte; with paging on or off), natively, under a
  shadow policy and under nested paging, with the resource-control
  invariant checked after every exit.

What must hold: the assembler returns an image or raises ``AsmError`` with
a one-line message (its excerpt: the line and a caret); the command line
returns an exit status, never the internal-error status 70, with at most a
one-line message on standard error (plus the line and caret of an assembly
error) and no traceback; a garbage guest ends with a report (poweroff,
crash or budget) and the same guest-visible result in every mode; nothing
runs longer than its deadline.  (Two exceptions to "the same result",
both where x86 allows more than one: a guest whose native result changes
with a one-entry TLB -- it used a stale TLB entry; and a ``rep stos``/
``movs`` that stores over its own bytes -- where it is interrupted decides
what runs next, on hardware as here.)  Failing inputs
are saved to ``--save`` and the figures are printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass

from .. import programs
from ..asm import assemble, assemble_file
from ..cli import EXIT_INTERNAL
from ..cli import main as cli_main
from ..compare import compare, differences
from ..errors import AsmError, EmuError
from ..hw import strings
from ..system import Config, System
from ..vmm.shadow import POLICIES
from .fuzzinputs import absurd_argv, garbage_kernel, mutate, random_source

DEADLINE = 60.0                 # seconds any one case may take
GUEST_BUDGET = 2_000_000        # cycles of a garbage guest


class Hang(BaseException):
    """A case ran past its deadline (BaseException: nothing may swallow it)."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise ``Hang`` in the body after ``seconds`` (main thread, POSIX)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise Hang(f"no answer after {seconds:g} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Failure:
    target: str         # asm | cli | guest
    what: str           # one line: what went wrong
    data: bytes | list  # the source, the argv or the guest's code


# --- inputs ----------------------------------------------------------------------------
def check_message(err: str, code: int) -> str | None:
    """What is wrong with a command's standard error and status, or None."""
    if code == EXIT_INTERNAL:
        return "internal error: " + err.strip().splitlines()[0][:200] if err.strip() \
            else "internal error"
    if "Traceback" in err:
        return "a traceback on standard error"
    lines = err.rstrip("\n").splitlines()
    if lines and not lines[0].startswith("emu"):
        return f"standard error does not start with 'emu': {lines[0][:100]!r}"
    if len(lines) > 3 or (len(lines) > 1 and "error" not in lines[0]):
        return f"{len(lines)} lines on standard error: {lines[0][:100]!r}"
    return None


def escaped(e: BaseException) -> str:
    """One line for an exception that escaped: its type, message and where."""
    where = traceback.extract_tb(e.__traceback__)[-1]
    return f"{type(e).__name__}: {str(e)[:100]} ({where.filename}:{where.lineno})"


class Fuzzer:
    """One campaign: inputs from ``seed``, files in ``workdir``."""

    def __init__(self, seed: int = 0, workdir: str | None = None):
        self.rng = random.Random(seed)
        self.workdir = workdir or tempfile.mkdtemp(prefix="emu-fuzz-")
        self.figures: Counter = Counter()
        self.failures: list[Failure] = []
        self.corpus = {p.stem: p.read_text(encoding="utf-8")
                       for p in sorted(programs.programs_dir().glob("*.s"))}
        self.include = str(programs.include_dir())

    def fail(self, target: str, what: str, data) -> None:
        self.figures["failures"] += 1
        self.failures.append(Failure(target, what, data))

    def _file(self, data: bytes, name: str = "case.s") -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    # --- the assembler ---------------------------------------------------------------
    def check_asm(self, data: bytes) -> None:
        self.figures["asm"] += 1
        path = self._file(data)
        try:
            with deadline(DEADLINE):
                assemble_file(path, include_dirs=[self.include])
            self.figures["asm_accepted"] += 1
        except AsmError as e:
            self.figures["asm_rejected"] += 1
            if "\n" in str(e) or len(e.excerpt().splitlines()) > 2 or not e.message:
                self.fail("asm", f"a message of more than one line: {str(e)[:100]!r}", data)
        except EmuError:
            self.figures["asm_rejected"] += 1
        except Hang as e:
            self.fail("asm", f"hang: {e}", data)
        except Exception as e:
            self.fail("asm", escaped(e), data)

    # --- the command line ------------------------------------------------------------
    def check_cli(self, argv: list[str], expect_error: bool | None = None) -> int | None:
        self.figures["cli"] += 1
        out, err = io.StringIO(), io.StringIO()
        code = None
        try:
            with deadline(DEADLINE), contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(err):
                code = cli_main(list(argv))
        except Hang as e:
            self.fail("cli", f"hang: {e}", argv)
            return None
        except BaseException as e:          # SystemExit included: main returns
            self.fail("cli", f"{type(e).__name__} escaped main: {str(e)[:100]}", argv)
            return None
        if not isinstance(code, int) or not 0 <= code <= 255:
            self.fail("cli", f"exit status {code!r}", argv)
            return code
        problem = check_message(err.getvalue(), code)
        if problem is None and expect_error and code == 0:
            problem = "bad input accepted (exit status 0)"
        if problem is not None:
            self.fail("cli", problem, argv)
        key = f"cli_status_{code}" if code in (0, 1, 2, 3, 4) else "cli_status_other"
        self.figures[key] += 1
        return code

    # --- garbage guests ----------------------------------------------------------------
    def check_guest(self, code: bytes, paging: bool, policy: str = "trace-cache") -> None:
        self.figures["guests"] += 1
        image = assemble(garbage_kernel(code, paging), "<garbage>",
                         include_dirs=[self.include])
        results = []
        smc = False

        def run(image, cfg):
            nonlocal smc
            system = System(image, cfg)
            r = system.run()
            if r.outcome == "budget" and results and results[0].outcome != "budget":
                r = System(image, cfg.with_(max_cycles=1 << 50)).run()
            self.figures["invariant_checks"] += getattr(system.vmm, "invariant_checks", 0)
            smc = smc or system.cpu.rep_overwrote_itself
            results.append(r)
            return r
        configs = [(mode, Config(mode=mode, shadow_policy=policy, mem_mib=8,
                                 max_cycles=GUEST_BUDGET, check_invariants=mode != "native"))
                   for mode in ("native", "shadow", "nested")]
        try:
            with deadline(DEADLINE):
                comparison = compare(image, configs, run=run)
        except Hang as e:
            self.fail("guest", f"hang: {e}", code)
            return
        except Exception as e:
            self.fail("guest", "out of System.run: " + escaped(e), code)
            return
        native = results[0]
        self.figures["guest_" + native.outcome] += 1
        try:
            stale = not smc and self._tlb_dependent(image, native)
        except Hang as e:
            self.fail("guest", f"hang: {e}", code)
            return
        if stale:
            # Its result depends on what the TLB holds: it used a stale entry
            # (an entry changed without invlpg or a CR3 load).  The
            # architecture allows either translation; a VMM may differ.
            self.figures["guest_tlb_dependent"] += 1
            return
        if smc:
            # A rep that stores over its own bytes goes on with whatever it
            # wrote there once interrupted: where a VM exit interrupts it
            # decides the rest, as it would on hardware.  Not comparable.
            self.figures["guest_self_modifying_rep"] += 1
            return
        for _, r in comparison.runs[1:]:
            if r.outcome not in ("poweroff", "crash", "budget") or not r.message:
                self.fail("guest", f"{r.mode}: no report ({r.outcome!r})", code)
                continue
            diff = differences(native, r)
            if diff:
                self.fail("guest", f"{r.mode}/{policy if r.mode == 'shadow' else ''} differs "
                          f"from native in {', '.join(diff)} (paging {'on' if paging else 'off'})",
                          code)

    def _tlb_dependent(self, image, native) -> bool:
        """Does the guest end otherwise natively when nothing stays in the
        TLB from one instruction to the next, nor from one element of a
        ``rep movs``/``stos`` to the next (every access walks)?  A native run
        that ran out of its budget: does the walking one end instead (a
        stale entry kept it going -- a rep that wrote over the directory
        entry of its own pages, say)?"""
        system = System(image, Config(mode="native", mem_mib=8, max_cycles=4 * GUEST_BUDGET))
        run, flush = system.cpu.run, system.mmu.flush_all

        def one_at_a_time(max_insns, max_cycles, irq=True):
            flush()
            return run(1, max_cycles, irq)

        def element_at_a_time(cpu, limit, size, move):
            step = -size if cpu.df else size
            while cpu.string_done < limit:
                flush()
                strings.element_wise(cpu, 1, size, move, step)
        system.cpu.run = one_at_a_time
        page_at_a_time, strings.run = strings.run, element_at_a_time
        try:
            with deadline(DEADLINE):
                walked = system.run()
        finally:
            strings.run = page_at_a_time
        if native.outcome == "budget":
            return walked.outcome != "budget"
        return walked.guest_visible() != native.guest_visible()

    # --- a campaign --------------------------------------------------------------------
    def one_round(self) -> None:
        rng = self.rng
        name = rng.choice(sorted(self.corpus))
        self.check_asm(mutate(self.corpus[name], rng))
        self.check_asm(random_source(rng).encode())
        if rng.random() < 0.2:
            self.check_asm(bytes(rng.randrange(256) for _ in range(rng.randint(0, 2000))))
        path = self._file(mutate(self.corpus[name], rng), "mutant.s")
        self.check_cli(["run", path, "--quiet", "--max-cycles", "300000",
                        "--mode", rng.choice(("native", "shadow", "nested"))])
        argv, refuse = absurd_argv(rng, rng.choice(("hello", path, "", "/", "nope.s",
                                                    "/dev/zero")))
        self.check_cli(argv, expect_error=refuse)
        self.check_guest(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))),
                         paging=rng.random() < 0.5, policy=rng.choice(POLICIES))

    def run(self, seconds: float) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.one_round()
            self.figures["rounds"] += 1
        self.figures["seconds"] = round(time.perf_counter() - t0)

    def report(self) -> str:
        f = self.figures
        statuses = ", ".join(f"{k[11:]}: {v:,}" for k, v in sorted(f.items())
                             if k.startswith("cli_status_"))
        lines = [
            f"emu fuzz: {f['rounds']:,} rounds in {f['seconds']} s",
            f"  assembler: {f['asm']:,} sources ({f['asm_accepted']:,} assembled, "
            f"{f['asm_rejected']:,} rejected with a message)",
            f"  command line: {f['cli']:,} invocations (exit status {statuses})",
            f"  garbage guests: {f['guests']:,} x 3 modes ({f['guest_poweroff']:,} powered "
            f"off, {f['guest_crash']:,} crashed, {f['guest_budget']:,} ran out of budget "
            f"natively); not compared: {f['guest_tlb_dependent']:,} that used a stale TLB "
            f"entry, {f['guest_self_modifying_rep']:,} whose rep stored over itself; "
            f"{f['invariant_checks']:,} invariant checks",
            f"  failures: {f['failures']:,}",
        ]
        for fl in self.failures[:20]:
            lines.append(f"    {fl.target}: {fl.what}")
        return "\n".join(lines)

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        for i, fl in enumerate(self.failures):
            base = os.path.join(directory, f"{i:03d}-{fl.target}")
            if isinstance(fl.data, list):
                with open(base + ".argv", "w", encoding="utf-8", errors="replace") as fh:
                    fh.write("\n".join(fl.data) + "\n")
            else:
                with open(base + (".bin" if fl.target == "guest" else ".s"), "wb") as fh:
                    fh.write(fl.data)
            with open(base + ".txt", "w", encoding="utf-8", errors="replace") as fh:
                fh.write(fl.what + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emu.devtools.fuzz",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long (default: 60)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: random)")
    ap.add_argument("--save", default="fuzz-failures", metavar="DIR",
                    help="where failing inputs go (default: %(default)s)")
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 1e7:
        ap.error("--seconds must be more than 0 and at most 10,000,000")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    with tempfile.TemporaryDirectory(prefix="emu-fuzz-") as work:
        fuzzer = Fuzzer(seed, work)
        print(f"emu fuzz: seed {seed}, {args.seconds:g} s", flush=True)
        fuzzer.run(args.seconds)
        print(fuzzer.report())
        if fuzzer.failures:
            try:
                fuzzer.save(args.save)
                print(f"failing inputs saved to {args.save}/")
            except OSError as e:
                print(f"emu fuzz: cannot save the failing inputs to {args.save}: "
                      f"{e.strerror or e}; they were:", file=sys.stderr)
                for fl in fuzzer.failures:
                    print(f"  {fl.target}: {fl.what}", file=sys.stderr)
    return 1 if fuzzer.failures else 0


if __name__ == "__main__":
    sys.exit(main())
