"""Every guest program: its recorded console output and exit status in every
mode and shadow policy, and the same guest-visible state everywhere."""

from __future__ import annotations

import pytest

from emu import programs
from emu.cli import build_parser, config_from, load
from emu.system import MODES, Config, System
from emu.vmm.shadow import POLICIES

NAMES = [name for name, _ in programs.catalogue()]
# Every guest-visible behaviour, in every mode; shadow paging under each policy.
assert {m for m, _ in [("native", None), ("shadow", None), ("nested", None)]} == set(MODES)
CONFIGS = [("native", None)] + [("shadow", p) for p in POLICIES] + [("nested", None)]


def _run(name: str, mode: str, policy: str | None):
    """Run a bundled program as ``emu run NAME --mode MODE`` would (with the
    options the program asks for), checking invariants under a VMM."""
    args = build_parser().parse_args(
        ["run", name, *programs.default_options(programs.resolve(name))])
    cfg = config_from(args).with_(mode=mode, shadow_policy=policy or Config.shadow_policy,
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
    outcome, status = programs.expected_outcome(name)
    assert r.outcome == outcome, r.message
    if status is not None:
        assert r.exit_status == status
    assert r.guest_visible() == native(name).guest_visible()
