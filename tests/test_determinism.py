"""Determinism: the same program, options and seed give byte-identical
traces and stats (host time aside), run to run and process to process.

Each run is a separate ``python -m emu`` process with its own
PYTHONHASHSEED, so nothing may hang on the order of a set or a dict of
strings, on object addresses or on the wall clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HOST_FIELDS = ("host_seconds",)      # the only figures allowed to differ


def emu_run(tmp_path, tag: str, argv: list[str], hashseed: str) -> tuple[int, bytes, dict,
                                                                         bytes]:
    """One ``emu run`` in its own process: (status, trace, stats, stdout)."""
    trace, stats = tmp_path / f"{tag}.jsonl", tmp_path / f"{tag}.json"
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    p = subprocess.run([sys.executable, "-m", "emu", "run", *argv, "--quiet",
                        "--trace", str(trace), "--stats-json", str(stats)],
                       capture_output=True, env=env, timeout=300)
    assert not p.stderr or p.returncode in (3, 4), p.stderr.decode()
    data = json.loads(stats.read_text())
    return p.returncode, trace.read_bytes(), data, p.stdout


def without_host_time(stats):
    if isinstance(stats, dict):
        return {k: without_host_time(v) for k, v in stats.items() if k not in HOST_FIELDS}
    if isinstance(stats, list):
        return [without_host_time(v) for v in stats]
    return stats


CASES = [
    ("multiproc", "native", []),
    ("multiproc", "shadow", ["--shadow-policy", "oos-cache"]),
    ("forkwait", "nested", []),
    ("demand", "shadow", ["--check-invariants"]),
    ("tlbthrash", "shadow", ["--tlb-policy", "random", "--seed", "1234"]),
    ("pager", "shadow", ["--clock", "cycles", "--shadow-policy", "trace-drop"]),
]


@pytest.mark.parametrize("program, mode, extra", CASES,
                         ids=[f"{p}-{m}-{'-'.join(e).replace('--', '') or 'default'}"
                              for p, m, e in CASES])
def test_two_processes_give_identical_traces_and_stats(tmp_path, program, mode, extra):
    argv = [program, "--mode", mode, *extra]
    a = emu_run(tmp_path, "a", argv, "1")
    b = emu_run(tmp_path, "b", argv, "2")
    assert a[0] == b[0]
    assert a[3] == b[3]                       # the guest's console
    assert len(a[1]) > 1000                   # a real trace
    assert a[1] == b[1], "the traces differ"
    assert a[2]["host_seconds"] > 0
    assert without_host_time(a[2]) == without_host_time(b[2])


def test_several_vms_on_one_machine_are_deterministic(tmp_path):
    argv = ["bigpages", "demand", "syscalls", "--machine-mib", "4", "--swap-latency", "2000"]
    a = emu_run(tmp_path, "a", argv, "3")
    b = emu_run(tmp_path, "b", argv, "4")
    assert a[1] == b[1] and a[3] == b[3]
    assert without_host_time(a[2]) == without_host_time(b[2])
    assert a[0] == b[0]
    assert a[2]["host"]["disk"]["writes"] > 1000        # it swapped, the same way twice


def test_the_random_tlb_policy_follows_its_seed(tmp_path):
    base = ["multiproc", "--mode", "native", "--tlb-policy", "random",
            "--tlb-entries", "16", "--tlb-ways", "4"]
    one = emu_run(tmp_path, "one", [*base, "--seed", "7"], "5")
    again = emu_run(tmp_path, "again", [*base, "--seed", "7"], "6")
    other = emu_run(tmp_path, "other", [*base, "--seed", "8"], "7")
    assert one[1] == again[1]
    tlb = lambda r: r[2]["stats"]["mmu"]["dtlb"]     # noqa: E731
    assert tlb(one) == tlb(again)
    assert tlb(one)["evictions"] > 0
    assert tlb(one) != tlb(other)             # another seed, other victims
    assert one[3] == other[3]                 # the guest cannot tell
