"""Several VMs on one overcommitted machine: reclaim, swapping, sharing.
Each guest gives exactly what it gives alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from emu.cli import load
from emu.multi import build, run_many
from emu.system import Config, System

PROGRAMS = ["bigpages", "demand", "syscalls"]      # 2,051 + 21 + 2 pages touched alone
OVERCOMMIT = dict(machine_mib=4, swap_latency=2000, share_interval=200_000,
                  check_invariants=True)           # 1,024 machine pages: about half


@pytest.fixture(scope="module")
def images():
    return [load(p) for p in PROGRAMS]


@pytest.mark.parametrize("mode", ["shadow", "nested"])
def test_guests_on_half_the_memory_give_exactly_their_solo_results(images, mode):
    cfg = Config(mode=mode, **OVERCOMMIT)
    multi = run_many(images, PROGRAMS, cfg)
    touched = 0
    for (name, r), image in zip(multi.results, images):
        alone = System(image, Config(mode=mode)).run()
        touched += alone.stats["vmm"]["pmap"]["allocated"]
        assert r.guest_visible() == alone.guest_visible(), name
    assert touched >= 2 * (4 << 20) // 4096          # the machine holds at most half
    host = multi.host
    assert host["machine"]["peak_allocated"] <= 1024
    assert host["swap_outs"] > 1000 and host["swap_ins"] > 1000
    assert host["disk"]["busy_cycles"] == (host["disk"]["writes"] + host["disk"]["reads"]) * (
        2000 + 4096 // 4)


def test_swapping_costs_simulated_time(images):
    alone = System(images[0], Config(mode="shadow")).run()
    multi = run_many(images[:1], PROGRAMS[:1], Config(mode="shadow", machine_mib=4,
                                                      swap_latency=2000))
    crowded = multi.results[0][1]
    assert crowded.guest_visible() == alone.guest_visible()
    waited = crowded.cycles - alone.cycles
    assert multi.host["swap_outs"] > 0
    # The vCPU waited for the disk: at least the transfers of its swap-ins.
    assert waited >= multi.host["disk"]["reads"] * (2000 + 1024)


def test_sharing_finds_zero_pages_and_the_identical_kernel_of_the_same_image():
    image = load("demand")
    cfg = Config(mode="shadow", machine_mib=40, share_interval=20_000, check_invariants=True)
    host, systems = build([image, image], ["a", "b"], cfg)
    host.start()
    procs = [s.start() for s in systems]
    host.env.run(until=30_000)                       # after the first scan
    sharers = {frozenset(v) for v in host.sharers.values()}
    assert frozenset({("a", 1), ("b", 1)}) in sharers   # the kernel's code page
    host.env.run(until=host.env.all_of(procs))
    assert host.zero_shared > 0                      # freshly zeroed frames, tables
    alone = System(image, Config(mode="shadow")).run()
    for s in systems:
        assert s.result().guest_visible() == alone.guest_visible()
    assert host.stats()["cow_breaks"] > 0


def test_a_write_to_a_shared_page_breaks_the_sharing_under_nested_paging_too():
    image = load("demand")
    cfg = Config(mode="nested", machine_mib=40, share_interval=20_000, check_invariants=True)
    multi = run_many([image, image], ["a", "b"], cfg)
    alone = System(image, Config(mode="nested")).run()
    for _, r in multi.results:
        assert r.guest_visible() == alone.guest_visible()
    assert multi.host["cow_breaks"] > 0 and multi.host["zero_shared"] > 0


def test_the_consoles_are_kept_apart():
    done = subprocess.run([sys.executable, "-m", "emu", "run", "hello", "syscalls",
                           "--quiet"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 94                      # syscalls' status (hello's is 0)
    lines = done.stdout.splitlines()
    assert "[hello] Hello from a guest kernel!" in lines
    assert "[syscalls] hello from pid 1" in lines
    assert all(line.startswith(("[hello] ", "[syscalls] ")) for line in lines)


def test_several_programs_need_a_vmm():
    done = subprocess.run([sys.executable, "-m", "emu", "run", "hello", "hello", "--mode",
                           "native"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("emu: error: several programs share a machine only "
                                   "under a VMM (--mode shadow or --mode nested)")
