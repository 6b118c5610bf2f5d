"""emu quiz over many seeds: problems never repeat, are never degenerate,
cover every case of their kind, and agree with the emulator run another
way (``emu.quiz.crosscheck``: the program run as ``emu run --trace`` runs
it, natively where the hardware is the model, in the stepper's session).

The seed counts keep this file under a minute; ``python -m
emu.quiz.survey`` runs the same checks on 1,000 seeds per kind (and
counts each case: docs/quiz.md, "How the quiz is checked").
"""

from __future__ import annotations

import pytest

from emu.quiz import DIFFICULTIES, KINDS, crosscheck, make
from emu.quiz.survey import REQUIRED, canonical, cases, degenerate, distinct

# Enough seeds (the difficulty cycling 1, 2, 3) for every required case.
COVERAGE = {"translate": 300, "tlb": 300, "six-steps": 120, "nested-walk": 100,
            "ad-shadow": 40, "cost": 30}
# Problems run again another way: 390 in all (and 40 more below).
CHECKED = {"translate": 75, "tlb": 75, "six-steps": 60, "nested-walk": 60,
           "ad-shadow": 60, "cost": 60}


def problem(kind: str, seed: int):
    return make(kind, seed, 1, seed % 3 + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_thousand_seeds_give_a_thousand_different_problems(kind):
    assert len({canonical(problem(kind, seed).spec) for seed in range(1000)}) == 1000


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("kind", KINDS)
def test_no_problem_repeats_in_a_thousand_seeds_at_one_difficulty(kind, difficulty):
    assert distinct(kind, range(1000), difficulty) == 1000


@pytest.mark.parametrize("kind", KINDS)
def test_answers_cover_every_case_and_no_problem_is_degenerate(kind):
    seen = set()
    for seed in range(COVERAGE[kind]):
        p = problem(kind, seed)
        assert degenerate(p) is None, (seed, degenerate(p))
        seen |= cases(p)
    assert sorted(REQUIRED[kind] - seen) == []


@pytest.mark.parametrize("kind", KINDS)
def test_answers_agree_with_the_emulator_run_another_way(kind):
    check = crosscheck.CHECKS[kind]
    assert [(s, found) for s in range(CHECKED[kind])
            if (found := check(problem(kind, s)))] == []


def test_translate_programs_print_the_same_under_a_vmm():
    assert [(s, found) for s in range(10)
            if (found := crosscheck.translate(problem("translate", s),
                                              modes=("shadow", "nested")))] == []


def test_ad_shadow_exits_are_those_the_stepper_shows():
    assert [(s, found) for s in range(30)
            if (found := crosscheck.ad_shadow_stepper(problem("ad-shadow", s)))] == []


def test_the_crosscheck_catches_a_wrong_reference_count():
    # A guest #PF under nested paging has no walk event: the walker's own
    # count of table references is what checks the quiz's number.
    p = problem("nested-walk", 3)
    worked = crosscheck.work(p)
    assert (worked.answer["outcome"], worked.answer["refs"]) == ("page-fault", 6)
    worked.answer["refs"] = 7
    try:
        assert crosscheck.nested_walk(p) == ["the walker counts 6 references; the quiz says 7"]
    finally:
        worked.answer["refs"] = 6
