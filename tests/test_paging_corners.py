"""Hand-written kernels at corners of IA-32 paging (``tests/programs/``):
rights combined from the PDE and the PTE with their error codes, a page
directory that maps itself, global entries across CR3 loads, a 4 MiB
page's A and D bits, a backward ``rep movsb`` whose first store faults,
code rewritten through another mapping of its page, a page table shared by
two directories and written as data, events from ring 3 delivered onto
kernel stack pages never touched, paging turned off and on with a global
entry cached, entries made present without invlpg, a live table rewritten
by string instructions, from ring 3 and by misaligned stores.  Each line
of their output is what the SDM's rules give (where they leave a choice,
the one docs/DECISIONS.md states) -- every program's header says why --
and it is the same natively, under shadow paging with each policy and
under nested paging."""

from __future__ import annotations

import pathlib

import pytest

from emu import programs
from emu.asm.assembler import assemble_file
from emu.system import Config, System
from emu.vmm.shadow import POLICIES

HERE = pathlib.Path(__file__).resolve().parent
NAMES = ("selfmap", "global_pages", "alias_code", "rights", "shared_table", "delivery",
         "paging_toggle", "present_without_invlpg", "string_tables",
         "table_writes")
MODES = [("native", {}), *((f"shadow-{p}", {"shadow_policy": p}) for p in POLICIES),
         ("nested", {})]


@pytest.mark.parametrize("mode, extra", MODES, ids=[m for m, _ in MODES])
@pytest.mark.parametrize("name", NAMES)
def test_each_line_is_the_sdms_in_every_mode(name, mode, extra):
    image = assemble_file(HERE / "programs" / f"{name}.s",
                          include_dirs=[programs.include_dir()])
    r = System(image, Config(mode=mode.split("-")[0], **extra)).run()
    assert (r.outcome, r.exit_status) == ("poweroff", 0), r.message
    assert r.console == (HERE / "expected" / f"{name}.txt").read_text()


@pytest.mark.parametrize("mode, extra", MODES, ids=[m for m, _ in MODES])
def test_a_hidden_fault_drops_a_stale_itlb_entry_natively_kept(mode, extra):
    """Where a guest breaks the TLB rules, shadow paging shows: a data read
    of a remapped code page faults (hidden) under shadow paging only, and
    the #PF drops the stale ITLB entry the other modes still run from
    (``tests/programs/stale_itlb.s``)."""
    image = assemble_file(HERE / "programs" / "stale_itlb.s",
                          include_dirs=[programs.include_dir()])
    r = System(image, Config(mode=mode.split("-")[0], **extra)).run()
    third = "0x0000000b" if mode.startswith("shadow") else "0x0000000a"
    assert r.console.split() == ["0x0000000a", "0x0000000a", third, "0x0000000b"]


@pytest.mark.parametrize("mode, extra", [("native", {}), ("shadow", {}),
                                         ("shadow", {"shadow_policy": "oos-cache"}),
                                         ("nested", {})],
                         ids=["native", "shadow", "shadow-oos-cache", "nested"])
@pytest.mark.parametrize("name", [*NAMES, "stale_itlb"])
def test_a_restored_run_goes_on_exactly(name, mode, extra):
    """Snapshots taken at a fifth, half and four fifths of each corner
    kernel, each restored and run on: the rest of the trace and the result
    are those of the run that took them (time travel at the corners)."""
    from test_snapshot import check_restores
    image = assemble_file(HERE / "programs" / f"{name}.s",
                          include_dirs=[programs.include_dir()])
    check_restores(image, Config(mode=mode, **extra), fractions=(0.2, 0.5, 0.8))


def _many_on_one_small_machine(copies: int, mode: str, share_interval: int, **extra):
    """``copies`` VMs of each corner kernel at once on a 1 MiB machine,
    every exit and host event checked; each VM must print what it prints
    alone.  Returns the host's figures."""
    from emu.multi import run_many
    images = [assemble_file(HERE / "programs" / f"{n}.s",
                            include_dirs=[programs.include_dir()]) for n in NAMES]
    names = [f"{n}#{k}" for k in range(1, copies + 1) for n in NAMES]
    config = Config(mode=mode, machine_mib=1, check_invariants=True,
                    share_interval=share_interval, **extra)
    result = run_many(images * copies, names, config)
    for name, r in result.results:
        expected = (HERE / "expected" / f"{name.split('#')[0]}.txt").read_text()
        assert (name, r.outcome, r.console) == (name, "poweroff", expected)
    host = result.host
    # Every VM has ended: every machine page and swap slot is back.
    assert (host["machine"]["allocated"], host["disk"]["pages_on_disk"],
            host["shared_pages"]) == (0, 0, 0)
    return host


@pytest.mark.parametrize("mode, extra", [*((f"shadow-{p}", {"shadow_policy": p})
                                            for p in POLICIES), ("nested", {})],
                         ids=[*(f"shadow-{p}" for p in POLICIES), "nested"])
def test_every_corner_kernel_four_times_on_one_small_machine(mode, extra):
    """Forty VMs -- each corner kernel four times -- on a 1 MiB machine with
    page sharing: reclaim, swap-outs and swap-ins, pages shared between the
    copies and broken apart, the CLOCK hand detaching TLB entries to test
    their pages' A bits, VMs ending and their memory going to the others.
    (Twenty such VMs found a page table that became shadowed while its TLB
    entry was detached and kept that entry's write permission, so its
    writes went unseen -- found again here when the fix is taken out --
    and a swap-out that the VMM had cut short dropping the record of the
    page's next swap-out: ``test_host_model.py`` holds that one now.)"""
    from emu.multi import DEFAULT_SHARE_INTERVAL
    host = _many_on_one_small_machine(4, mode.split("-")[0], DEFAULT_SHARE_INTERVAL, **extra)
    assert host["swap_outs"] > 0 and host["swap_ins"] > 0 and host["reclaimed"] > 0
    assert host["cow_breaks"] > 0 and host["released"] > 0


def test_vms_that_end_give_their_memory_to_those_still_running():
    """Twenty VMs without sharing on 1 MiB under the oos-cache policy:
    once most have ended, the last ones need the memory the others held.
    (Kept by the VMs that had ended, it left the last two no page at all:
    "machine memory exhausted".)"""
    host = _many_on_one_small_machine(2, "shadow", 0, shadow_policy="oos-cache")
    assert host["released"] > host["machine"]["machine_pages"]


SPACES_CASES = [*((m, e, None) for m, e in MODES), *((m, e, 1) for m, e in MODES[1:])]


@pytest.mark.parametrize("mode, extra, machine_mib", SPACES_CASES,
                         ids=[m + ("-1mib" if mib else "") for m, _, mib in SPACES_CASES])
def test_a_hundred_address_spaces_on_a_machine_too_small_for_their_tables(
        mode, extra, machine_mib):
    """``many_spaces.s``: a hundred page directories visited in turn.  On
    1 MiB under shadow paging their shadows and the guest tables they
    protect do not fit; when no guest page can go, the VMM gives shadow
    pages back (``Host._shrink_tables``) -- before, the run ended with
    "machine memory exhausted" under the cache policies."""
    image = assemble_file(HERE / "programs" / "many_spaces.s",
                          include_dirs=[programs.include_dir()])
    config = Config(mode=mode.split("-")[0], machine_mib=machine_mib,
                    check_invariants=machine_mib is not None, **extra)
    r = System(image, config).run()
    expected = (HERE / "expected" / "many_spaces.txt").read_text()
    assert (r.outcome, r.console) == ("poweroff", expected)
    if machine_mib and mode.endswith("cache"):
        assert r.stats["host"]["tables_shrunk"] > 0
        assert r.stats["vmm"]["shadow"]["shrunk"] == r.stats["host"]["tables_shrunk"]


@pytest.mark.parametrize("policy", ["trace-cache", "oos-cache"])
def test_a_restored_run_goes_on_exactly_while_the_vmm_frees_tables(policy):
    """Time travel across the VMM freeing shadow pages for room: snapshots
    of ``many_spaces.s`` on 1 MiB, restored, give the rest of the run."""
    from test_snapshot import check_restores
    image = assemble_file(HERE / "programs" / "many_spaces.s",
                          include_dirs=[programs.include_dir()])
    check_restores(image, Config(mode="shadow", shadow_policy=policy, machine_mib=1),
                   fractions=(0.3, 0.7))
