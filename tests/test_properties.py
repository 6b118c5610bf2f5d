"""Differential property tests: a random guest kernel gives the same
guest-visible result natively, under every shadow policy and under nested
paging, with the resource-control invariant checked after every VM exit.

The guests come from ``tests/guestgen.py`` as assembly text, so a failing
example shrinks to a short readable kernel; the shrunk program is saved to
``tests/regressions/`` and replayed in every mode by ``test_regression``.

Profiles (environment variable ``EMU_HYPOTHESIS``):

    ci     (default) 25 examples per property, derandomized: CI is reproducible
    long   EMU_EXAMPLES examples (default 1000) per property, a fresh random seed

    EMU_HYPOTHESIS=long python -m pytest tests/test_properties.py
    python tests/test_properties.py --examples 500      # the same, with figures
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guestgen  # noqa: E402
from harness import PGTAB, paging_on, run_snippet  # noqa: E402

from emu import programs  # noqa: E402
from emu.cli import build_parser, config_from  # noqa: E402

REGRESSIONS = pathlib.Path(__file__).resolve().parent / "regressions"
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          database=None, suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("EMU_EXAMPLES", "1000")),
                          deadline=None, database=None, suppress_health_check=_QUIET,
                          print_blob=True)
PROFILE = settings.get_profile(os.environ.get("EMU_HYPOTHESIS", "ci"))

# What the properties did in this process (``python tests/test_properties.py``
# prints them): guests generated, runs, invariant checks, faults predicted.
FIGURES = {"programs": 0, "garbage_programs": 0, "runs": 0, "invariant_checks": 0,
           "faults_predicted": 0, "failures": 0}


def _count(results) -> None:
    FIGURES["runs"] += len(results)
    for _, system, _ in results:
        FIGURES["invariant_checks"] += getattr(system.vmm, "invariant_checks", 0)


def _save_regression(prog, why: str) -> None:
    """Keep the shrunk failing program (the last one hypothesis runs)."""
    FIGURES["failures"] += 1
    try:
        from hypothesis.control import current_build_context
        final = current_build_context().is_final
    except Exception:
        final = True
    if not final or os.environ.get("EMU_SAVE_REGRESSIONS") == "0":
        return
    REGRESSIONS.mkdir(exist_ok=True)
    header = "; regression: " + why.splitlines()[0][:200] + "\n"
    (REGRESSIONS / f"{prog.name}.s").write_text(header + prog.source)


def differences(results, tolerate=()) -> list[str]:
    """One line per run whose guest-visible result differs from native."""
    _, _, native = results[0]
    want = native.guest_visible()
    out = []
    for label, _, r in results[1:]:
        got = r.guest_visible()
        if native.outcome == "budget" and r.outcome == "budget":
            # The budget is in cycles, and a VMM's work takes some of them:
            # a guest that runs away stops at a different instruction.
            continue
        bad = [k for k in want if got[k] != want[k] and k not in tolerate]
        if bad:
            out.append(f"{label} differs from native in {', '.join(bad)}: "
                       + "; ".join(f"{k} {got[k]!r} != {want[k]!r}" for k in bad
                                   if k != "console")[:300])
    return out


@PROFILE
@given(guestgen.guest_programs())
def test_generated_guests_agree_in_every_mode(prog):
    """Random page tables, remaps, CR3 switches, user and kernel accesses,
    faults handled by the guest: one guest-visible result in every mode, and
    the faults the generator's paging model predicts."""
    FIGURES["programs"] += 1
    FIGURES["faults_predicted"] += len(prog.expected_faults)
    try:
        results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields())
        _count(results)
        _, native_sys, native = results[0]
        assert (native.outcome, native.exit_status) == ("poweroff", 0), native.message
        faults = guestgen.fault_log(native_sys)
        assert faults == prog.expected_faults, (
            f"the native #PF log {[(hex(a), b) for a, b in faults]} is not the model's "
            f"{[(hex(a), b) for a, b in prog.expected_faults]}")
        diffs = differences(results)
        assert not diffs, "\n".join(diffs)
    except Exception as e:
        _save_regression(prog, f"{type(e).__name__}: {e}")
        raise


@PROFILE
@given(guestgen.garbage_programs())
def test_garbage_page_tables_end_the_same_way_everywhere(prog):
    """Entries with random bits, frames outside RAM, entries naming the
    guest's own tables, CR3 at another directory, a data page or outside RAM:
    every mode ends with a report (poweroff, crash or budget), the same
    guest-visible result, no Python exception out of ``System.run`` and the
    invariant intact after every exit."""
    FIGURES["garbage_programs"] += 1
    try:
        results = guestgen.run_everywhere(prog.source, prog.name, prog.config_fields())
        _count(results)
        for label, _, r in results:
            assert r.outcome in ("poweroff", "crash", "budget"), (label, r.outcome)
            assert r.message, label
        diffs = differences(results)
        assert not diffs, "\n".join(diffs)
    except Exception as e:
        _save_regression(prog, f"{type(e).__name__}: {e}")
        raise


# --- the regressions: every saved program, in every mode --------------------------------
def _regression_params():
    out = []
    for path in sorted(REGRESSIONS.glob("*.s")):
        marks = []
        for line in path.read_text(encoding="utf-8").splitlines()[:5]:
            if line.startswith("; xfail:"):
                marks.append(pytest.mark.xfail(strict=True, reason=line[8:].strip()))
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


@pytest.mark.parametrize("path", _regression_params())
def test_regression(path):
    args = build_parser().parse_args(["run", str(path), *programs.default_options(str(path))])
    cfg = config_from(args)
    fields = {f: getattr(cfg, f) for f in ("mem_mib", "tlb_entries", "tlb_ways", "tlb_kind",
                                          "tlb_large", "max_cycles", "clock", "seed",
                                          "tlb_policy")}
    results = guestgen.run_everywhere(path.read_text(encoding="utf-8"), str(path), fields)
    for label, _, r in results:
        assert r.outcome in ("poweroff", "crash", "budget"), (label, r.message)
    diffs = differences(results)
    assert not diffs, "\n".join(diffs)


def test_there_is_a_regression_to_replay():
    assert _regression_params(), "tests/regressions/ holds no program"


# --- the generator's own rules (bugs in the generator, not in the emulator) ----------
def test_the_handler_is_never_asked_to_fix_an_entry_it_cannot_reach():
    # The guest's #PF handler writes the entry through the kernel's identity
    # map (0..4 MiB).  A remap can make a 4 MiB frame (0x400000) a page table;
    # a fix there would land in kpt instead, and the retry fault again.
    assert guestgen.Compiler._fix_ok(((0x110004, ~0, 1),))
    assert not guestgen.Compiler._fix_ok(((0x400004, ~0, 1),))
    assert not guestgen.Compiler._fix_ok(((0x110004, ~0, 1), (0x800000, ~0, 4)))


def test_with_pge_every_kernel_pde_starts_accessed():
    # Whether a walk through another directory's kernel PDE happens depends
    # on the TLB's size while kernel entries are global.
    plan = {"pge": True, "wp": True, "timer": 0, "tlb": (64, 4, "split", 8),
            "max_cycles": 3_000_000, "pdes": [[0] * len(guestgen.PDX_SET)] * guestgen.N_PD,
            "ptes": [[0] * len(guestgen.PTX_SET)] * guestgen.N_PT, "ops": []}
    prog = guestgen.compile_plan(plan)
    for pd in guestgen.PDS:
        assert f"section at_{pd:x} start={pd:#x}" in prog.source
    assert prog.source.count("dd 0x001f0027") == guestgen.N_PD
    without = guestgen.compile_plan({**plan, "pge": False}).source
    assert without.count("dd 0x001f0007") == guestgen.N_PD      # set by the first walk


# --- bugs found by the properties above ---------------------------------------------
# Fixed ones stay as regression tests; open ones are strict xfails (they fail
# until fixed, then XPASS fails the suite: remove the mark).
WP0_READ_ONLY_PDE = """
    mov dword [0xA0000], 0x87         ; pde[0]: 4 MiB identity, P W U PS
    mov dword [0xA0004], 0xA1005      ; pde[1]: -> page table 0xA1000, P r U (read-only)
    mov dword [0xA1000], 0x400047     ; pte[0]: -> 0x400000, P W U D
    mov eax, cr4
    or eax, 0x10
    mov cr4, eax
    mov eax, 0xA0000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000                ; paging on, CR0.WP=0
    mov cr0, eax
    mov dword [0x400010], 0x1234      ; a supervisor write that WP=0 allows
    mov eax, [0x400010]
"""


def test_a_write_that_cr0_wp_0_allows_through_a_read_only_pde():
    # Was: the wp-emulate fill kept the gpde's R/W in the spde, the emulated
    # write faulted again and the VMM recursed until RecursionError.
    _, native = run_snippet(WP0_READ_ONLY_PDE, "native", mem_mib=8)
    assert native.outcome == "poweroff" and native.exit_status == 0x1234
    _, shadow = run_snippet(WP0_READ_ONLY_PDE, "shadow", mem_mib=8, check_invariants=True)
    assert shadow.guest_visible() == native.guest_visible()


def test_bus_error_counts_the_instructions_before_it():
    # Was: natively the BusError handler of Cpu.run set eip to the faulting
    # instruction but forgot the instructions its block retired before it.
    body = "    mov ebx, 7\n    mov ebx, [0x100000]\n"   # 1 MiB of RAM: pa 1 MiB is outside
    runs = {mode: run_snippet(body, mode, mem_mib=1)[1]
            for mode in ("native", "shadow", "nested")}
    for mode, r in runs.items():
        assert r.outcome == "crash" and "outside memory" in r.message, mode
        assert r.registers["eip"] == 0x100C, mode     # the faulting instruction
    # mov esp (harness) and mov ebx, 7 retired before the bus error
    assert [r.instructions for r in runs.values()] == [2, 2, 2]


SELF_PTE = PGTAB + (PGTAB >> 12) * 4        # the PTE that maps the page table itself
AD_CLEARED_WITHOUT_INVLPG = paging_on() + f"""
    mov dword [{PGTAB + 0x10:#x}], 1          ; a write through the table's own mapping: A, D set
    mov dword [{SELF_PTE:#x}], {PGTAB | 7:#x}      ; rewrite that PTE with A and D clear, no INVLPG
    mov dword [{PGTAB + 0x10:#x}], 2          ; a TLB hit natively: A and D stay clear
    mov eax, [{SELF_PTE:#x}]
"""


@pytest.mark.parametrize("policy", ["trace-cache", "trace-drop"])
def test_stale_tlb_write_to_a_traced_table_keeps_a_and_d_clear(policy):
    _, native = run_snippet(AD_CLEARED_WITHOUT_INVLPG, "native")
    assert native.exit_status == PGTAB | 7
    _, shadow = run_snippet(AD_CLEARED_WITHOUT_INVLPG, "shadow", shadow_policy=policy,
                            check_invariants=True)
    assert shadow.guest_visible() == native.guest_visible()


def test_stale_tlb_write_to_a_table_under_oos_and_nested_keeps_a_and_d_clear():
    _, native = run_snippet(AD_CLEARED_WITHOUT_INVLPG, "native")
    for mode, policy in (("shadow", "oos-cache"), ("shadow", "oos-drop"), ("nested", None)):
        _, r = run_snippet(AD_CLEARED_WITHOUT_INVLPG, mode,
                           shadow_policy=policy or "trace-cache", check_invariants=True)
        assert r.guest_visible() == native.guest_visible(), (mode, policy)


# --- the long run as a command ----------------------------------------------------------
def main(argv=None) -> int:
    import argparse
    import time
    ap = argparse.ArgumentParser(prog="python test_properties.py",
                                 description="Run the differential properties for longer "
                                             "and print the figures.")
    ap.add_argument("--examples", type=int, default=500, help="examples per property")
    ap.add_argument("--only", choices=("generated", "garbage"), default=None)
    args = ap.parse_args(argv)
    if not 1 <= args.examples <= 10**7:
        ap.error("--examples must be 1 to 10,000,000")
    os.environ["EMU_HYPOTHESIS"] = "long"
    os.environ["EMU_EXAMPLES"] = str(args.examples)
    # a fresh copy of this module, decorated with the long profile
    import test_properties as tp
    t0 = time.perf_counter()
    failed = []
    tests = {"generated": tp.test_generated_guests_agree_in_every_mode,
             "garbage": tp.test_garbage_page_tables_end_the_same_way_everywhere}
    for name, test in tests.items():
        if args.only in (None, name):
            try:
                test()
            except Exception as e:          # hypothesis has printed the example
                failed.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    f = tp.FIGURES
    print(f"generated guests: {f['programs']:,} ({f['faults_predicted']:,} page faults "
          f"predicted by the model); garbage-table guests: {f['garbage_programs']:,}")
    print(f"runs: {f['runs']:,} (native, 4 shadow policies, nested); invariant checks: "
          f"{f['invariant_checks']:,}; failing runs seen (shrinking included): "
          f"{f['failures']:,}; {time.perf_counter() - t0:.0f} s")
    for line in failed:
        print("FAILED", line)
    return 1 if failed else 0



def test_the_long_run_refuses_a_bad_number_of_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--examples", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python test_properties.py: error: --examples must be 1 to 10,000,000")


if __name__ == "__main__":
    sys.exit(main())
