"""Console output in place (``System._console_split`` natively,
``_console_exit_split`` under a VMM) is a shortcut, never a change: every
guest, in every mode and shadow policy, alone and several on one small
machine, gives exactly the figures of the run where every character ends
the CPU's batch (and, under a VMM, goes the whole way through the exit) --
and so does the run where the shortcut always declines at the last moment."""

from __future__ import annotations

import pytest

from emu import programs
from emu.cli import build_parser, config_from, load
from emu.multi import run_many
from emu.system import Config, System
from emu.system_vcpu import VcpuMixin
from emu.vmm.shadow import POLICIES

NAMES = [name for name, _ in programs.catalogue()]
CONFIGS = [("native", None)] + [("shadow", p) for p in POLICIES] + [("nested", None)]


def _config(name: str, mode: str, policy: str | None) -> Config:
    args = build_parser().parse_args(
        ["run", name, *programs.default_options(programs.resolve(name))])
    return config_from(args).with_(mode=mode, shadow_policy=policy or Config.shadow_policy)


def _figures(r) -> dict:
    out = r.to_json()
    out.pop("host_seconds")
    return out


SPLITS = (VcpuMixin._console_split, VcpuMixin._console_exit_split)


def _declines(self, detail, insns, cycles):
    """A split that, whatever it had written, finds another event due."""
    split = SPLITS[self.vmm is not None]
    env = self.env
    peek = env.peek
    env.peek = lambda: env.now          # nothing may be owed: the batch ends here
    try:
        return split(self, detail, insns, cycles)
    finally:
        env.peek = peek


@pytest.mark.parametrize("mode,policy", CONFIGS, ids=[m + (f"-{p}" if p else "")
                                                      for m, p in CONFIGS])
@pytest.mark.parametrize("name", NAMES)
def test_every_guest_gives_the_same_figures_with_and_without_it(monkeypatch, name, mode,
                                                               policy):
    image, cfg = load(name), _config(name, mode, policy)
    fast = System(image, cfg).run()
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", False)
    slow = System(image, cfg).run()
    assert _figures(fast) == _figures(slow)
    assert fast.console == programs.expected_output(name).read_text()


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
def test_a_split_that_declines_leaves_the_batch_as_it_was(monkeypatch, mode):
    image, cfg = load("exceptions"), _config("exceptions", mode, None)
    fast = System(image, cfg).run()
    monkeypatch.setattr(VcpuMixin, "_console_split", _declines)
    monkeypatch.setattr(VcpuMixin, "_console_exit_split", _declines)
    declined = System(image, cfg).run()
    assert _figures(declined) == _figures(fast)


@pytest.mark.parametrize("mode", ["shadow", "nested"])
def test_several_vms_on_a_small_machine_give_the_same_figures(monkeypatch, mode):
    names = ["syscalls", "exceptions", "demand"]
    images = [load(n) for n in names]
    cfg = Config(mode=mode, machine_mib=2, swap_latency=500, share_interval=20_000)
    fast = run_many(images, names, cfg)
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", False)
    slow = run_many(images, names, cfg)
    assert_same_machine(fast, slow)


def assert_same_machine(a, b) -> None:
    """Two runs of several VMs on one machine gave the same figures."""
    assert [(n, _figures(r)) for n, r in a.results] == [(n, _figures(r)) for n, r in b.results]
    assert a.host == b.host and a.cycles == b.cycles


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
@pytest.mark.parametrize("share", [0.1, 0.37, 0.71, 0.93])
def test_a_budget_that_ends_among_console_exits_ends_at_the_same_instruction(
        monkeypatch, mode, share):
    """What a batch owes besides its instructions' cycles (deliveries,
    walks, exits answered in place) is not seen by its cycle budget: the
    characters stop going on in place while the run's budget could be
    passed."""
    image, cfg = load("demand"), _config("demand", mode, None)
    whole = System(image, cfg).run()
    cfg = cfg.with_(max_cycles=int(whole.cycles * share))
    fast = System(image, cfg).run()
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", False)
    slow = System(image, cfg).run()
    assert fast.outcome == "budget"
    assert _figures(fast) == _figures(slow)


@pytest.mark.parametrize("mode", ["shadow", "nested"])
@pytest.mark.parametrize("name", ["bigpages", "tlbthrash"])
def test_one_vm_that_swaps_gives_the_same_figures(monkeypatch, name, mode):
    """Alone on a machine too small for it: pages reclaimed and read back
    between the characters, pinned pages let go on progress only."""
    image = load(name)
    cfg = _config(name, mode, None).with_(machine_mib=1, swap_latency=300)
    fast = System(image, cfg).run()
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", False)
    slow = System(image, cfg).run()
    assert fast.stats["host"]["swap_outs"] > 0
    assert _figures(fast) == _figures(slow)


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
@pytest.mark.parametrize("name", ["syscalls", "multiproc", "exceptions", "forkwait"])
def test_under_the_cycle_clock_too(monkeypatch, name, mode):
    """Under the cycle clock the timer is a process of its own: a character
    goes on in place only while its next tick comes after what the vCPU
    owes, so the ticks (and the interrupts of a preemptive kernel) land on
    the same instructions."""
    image = load(name)
    cfg = _config(name, mode, None).with_(clock="cycles")
    fast = System(image, cfg).run()
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", False)
    slow = System(image, cfg).run()
    monkeypatch.setattr(VcpuMixin, "CONSOLE_IN_PLACE", True)
    monkeypatch.setattr(VcpuMixin, "_console_split", _declines)
    monkeypatch.setattr(VcpuMixin, "_console_exit_split", _declines)
    declined = System(image, cfg).run()
    assert fast.stats["timer"] == slow.stats["timer"]
    assert _figures(fast) == _figures(slow) == _figures(declined)
