"""``emu quiz``: seeded exercises whose answers the emulator computes.

Each kind generates a small machine state and a question from a seed, as
a guest program (``harness.py``), and answers it by running the project's
own hardware and VMM on that state, never by a separate formula, so a
quiz cannot disagree with what ``emu step`` shows::

    problem = make("six-steps", seed=7, number=1, difficulty=2)
    worked = work(problem)       # the state, the questions, the answer, why
    worked.answer                # what ``emu quiz --check`` compares

The same kind, seed, difficulty and quiz version give the same problem and
the same answer on any machine.
"""

from __future__ import annotations

import functools
import importlib

from .common import QUIZ_VERSION, Problem, Worked
from .rng import Rng

KINDS = {   # name -> module
    "translate": "translate",
    "six-steps": "sixsteps",
    "nested-walk": "nestedwalk",
    "tlb": "tlbkind",
    "ad-shadow": "adshadow",
    "cost": "cost",
}
DIFFICULTIES = (1, 2, 3)
MAX_SEED = (1 << 63) - 1
MAX_COUNT = 100


def kind_module(kind: str):
    return importlib.import_module(f"{__name__}.{KINDS[kind]}")


def kind_of(kind: str, number: int) -> str:
    """The kind of problem ``number`` of a quiz of ``kind`` ("all" cycles
    through every kind in order)."""
    if kind != "all":
        return kind
    names = list(KINDS)
    return names[(number - 1) % len(names)]


def make(kind: str, seed: int, number: int, difficulty: int) -> Problem:
    """Problem ``number`` (from 1) of ``kind`` for ``seed``."""
    rng = Rng(f"emu-quiz/{QUIZ_VERSION}/{kind}/{difficulty}/{seed}/{number}")
    spec = kind_module(kind).generate(rng, difficulty)
    return Problem(kind, seed, number, difficulty, spec)


def problems(kind: str, seed: int, count: int, difficulty: int) -> list[Problem]:
    return [make(kind_of(kind, n), seed, n, difficulty) for n in range(1, count + 1)]


@functools.lru_cache(maxsize=4096)
def _work(kind: str, seed: int, number: int, difficulty: int) -> Worked:
    return kind_module(kind).work(make(kind, seed, number, difficulty))


def work(problem: Problem) -> Worked:
    """The problem posed and solved (runs the emulator; cached)."""
    return _work(problem.kind, problem.seed, problem.number, problem.difficulty)


__all__ = ["DIFFICULTIES", "KINDS", "QUIZ_VERSION", "Problem", "Worked", "kind_of", "make",
           "problems", "work"]
