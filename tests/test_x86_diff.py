"""Every instruction form against a real x86 model (Unicorn), with random
operands, flags and memory: see ``x86diff.py``.  ``EMU_X86_CASES`` sets the
cases per form (default 300); ``python tests/x86diff.py --cases N`` is the
long profile."""

from __future__ import annotations

import os

import pytest
import x86diff

from emu import isa

CASES = int(os.environ.get("EMU_X86_CASES", x86diff.CASES_DEFAULT))

# The rows whose effect is the project's own by design, and why; each has
# its own tests (test_instructions.py, test_exceptions.py, test_paging.py,
# the conformance vectors).
NOT_COMPARED = {
    ("mov", ("r", "c")), ("mov", ("c", "r")), ("int", ("i8",)), ("int3", ()), ("iret", ()),
    ("hlt", ()), ("lidt", ("m",)), ("lgdt", ("m",)), ("ltr", ("w",)),
    ("invlpg", ("m",)), ("in", ("r", "i8")), ("in", ("r", "dx")), ("in", ("al", "i8")),
    ("in", ("al", "dx")), ("out", ("i8", "r")), ("out", ("dx", "r")), ("out", ("i8", "al")),
    ("out", ("dx", "al")),
}


def test_the_rows_not_compared_are_the_system_ones_with_a_reason():
    assert {row.key for row in isa.TABLE if row.differs} == NOT_COMPARED
    assert all(row.differs.strip() for row in isa.TABLE if row.differs)


@pytest.mark.parametrize("row", x86diff.forms(), ids=lambda r: f"{r.mnemonic}:{r.form}")
def test_form_agrees_with_x86(row):
    n, failures = x86diff.run_form(row, CASES)
    assert n == CASES
    assert not failures, f"{len(failures)} of {n} differ:\n" + "\n".join(failures[:5])


def test_the_comparison_sees_a_wrong_flag(monkeypatch):
    # A flag the CPU got wrong must show: make inc compute AF as 0 (in
    # translations made for this test alone: the process keeps what it
    # compiled, wherever it ran).
    from emu.hw import cpu_blocks, semantics, translate

    monkeypatch.setattr(translate, "_MADE", {})
    monkeypatch.setattr(cpu_blocks, "_SEEN", {})

    original = semantics.Gen.flag

    def wrong_af(self, name, expr):
        original(self, name, self.reg(0) if name == "af" and self.insn.mnemonic == "inc"
                 else expr)
    monkeypatch.setattr(semantics.Gen, "flag", wrong_af)
    n, failures = x86diff.run_form(isa.BY_KEY[("inc", ("r",))], 100, seed=7)
    assert failures and all("(AF)" in f for f in failures)
