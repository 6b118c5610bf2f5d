"""Every guest program: its recorded console output and exit status in every
mode and shadow policy, and the same guest-visible state everywhere."""

from __future__ import annotations

import pytest

from emu import programs
from emu.cli import load
from emu.system import Config, System
from emu.vmm.shadow import POLICIES

NAMES = [name for name, _ in programs.catalogue()]
# Every guest-visible behaviour, in every mode; shadow paging under each policy.
CONFIGS = [("native", None)] + [("shadow", p) for p in POLICIES]


def _run(name: str, mode: str, policy: str | None):
    cfg = Config(mode=mode, shadow_policy=policy or Config.shadow_policy,
                 check_invariants=mode != "native")
    return System(load(name), cfg).run()


_native: dict = {}


def native(name: str):
    if name not in _native:
        _native[name] = _run(name, "native", None)
    return _native[name]


def test_every_program_has_an_expected_output():
    for name in NAMES:
        assert programs.expected_output(name).exists(), name


@pytest.mark.parametrize("mode,policy", CONFIGS, ids=[m + (f"-{p}" if p else "")
                                                      for m, p in CONFIGS])
@pytest.mark.parametrize("name", NAMES)
def test_program_output_and_equivalence(name, mode, policy):
    expected = programs.expected_output(name).read_text()
    r = native(name) if mode == "native" else _run(name, mode, policy)
    assert r.console == expected
    assert r.outcome == "poweroff", r.message
    assert r.guest_visible() == native(name).guest_visible()
