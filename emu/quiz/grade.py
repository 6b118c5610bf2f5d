"""``emu quiz --check ANSWERS.json``: grade a student's answers.

ANSWERS.json is the quiz's own JSON (``--format json``) with each
problem's ``answer`` filled in (docs/quiz.md).  The problems are made
again from its kind, seed and difficulty and solved; each question's
answer is compared with the solver's, and every wrong one is reported
with the right answer and one line of why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import EmuError
from . import DIFFICULTIES, KINDS, MAX_SEED, QUIZ_VERSION, kind_module, kind_of, make, work
from .answers import AnswerError
from .render import FORMAT

MAX_ANSWERS = 4 << 20          # bytes of ANSWERS.json read


@dataclass
class Wrong:
    question: int              # 1-based
    text: str                  # the question
    given: str
    expected: str
    why: str


@dataclass
class Graded:
    number: int
    kind: str
    right: int
    total: int
    wrong: list = field(default_factory=list)
    answered: bool = True


def read(path: str) -> dict:
    """The JSON object in ``path``; any problem is one EmuError line."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_ANSWERS + 1)
    except OSError as e:
        raise EmuError(f"cannot read {path}: {e.strerror}") from None
    if len(raw) > MAX_ANSWERS:
        raise EmuError(f"{path}: more than {MAX_ANSWERS >> 20} MiB: not a quiz's answers")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise EmuError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise EmuError(f"{path}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    except RecursionError:
        raise EmuError(f"{path}: nested too deeply to be a quiz's answers") from None
    except ValueError:         # an integer of more digits than Python converts
        raise EmuError(f"{path}: a number too long to be a quiz's answer") from None
    if not isinstance(data, dict):
        raise EmuError(f"{path}: expected a JSON object (a quiz from 'emu quiz --format "
                       "json' with its answers filled in)")
    return data


def _field(data: dict, key: str, path: str, kind=int):
    if key not in data:
        raise EmuError(f"{path}: the field '{key}' is missing (see docs/quiz.md)")
    value = data[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise EmuError(f"{path}: '{key}' must be an integer")
    if kind is not int and not isinstance(value, kind):
        raise EmuError(f"{path}: '{key}' has the wrong type")
    return value


def check(data: dict, path: str) -> tuple[dict, list[Graded]]:
    """Grade ``data`` (read from ``path``); returns the quiz's header and one
    ``Graded`` per problem in the file."""
    if data.get("format") != FORMAT:
        raise EmuError(f"{path}: not an emu quiz (its 'format' must be \"{FORMAT}\")")
    version = _field(data, "version", path)
    if version != QUIZ_VERSION:
        raise EmuError(f"{path}: made by quiz version {version}; this emu makes version "
                       f"{QUIZ_VERSION}, whose problems differ")
    kind = _field(data, "kind", path, str)
    if kind != "all" and kind not in KINDS:
        raise EmuError(f"{path}: unknown kind '{kind[:40]}'")
    seed = _field(data, "seed", path)
    if not 0 <= seed <= MAX_SEED:
        raise EmuError(f"{path}: 'seed' must be between 0 and 2**63 - 1")
    difficulty = _field(data, "difficulty", path)
    if difficulty not in DIFFICULTIES:
        raise EmuError(f"{path}: 'difficulty' must be 1, 2 or 3")
    plist = _field(data, "problems", path, list)
    if not plist:
        raise EmuError(f"{path}: 'problems' is empty: nothing to grade")
    out, seen = [], set()
    for i, entry in enumerate(plist, 1):
        where = f"{path}: problems[{i - 1}]"
        if not isinstance(entry, dict):
            raise EmuError(f"{where} must be an object")
        number = _field(entry, "number", where)
        if not 1 <= number <= 1000:
            raise EmuError(f"{where}: 'number' must be between 1 and 1000")
        if number in seen:
            raise EmuError(f"{where}: problem {number} is answered twice")
        seen.add(number)
        pkind = kind_of(kind, number)
        if entry.get("kind", pkind) != pkind:
            raise EmuError(f"{where}: problem {number} of this quiz is a {pkind} problem, "
                           f"not {str(entry.get('kind'))[:40]}")
        if "answer" not in entry:
            raise EmuError(f"{where}: the field 'answer' is missing (null if unanswered)")
        problem = make(pkind, seed, number, difficulty)
        out.append(_grade(problem, entry["answer"], where))
    head = {"kind": kind, "seed": seed, "difficulty": difficulty}
    return head, out


def _grade(problem, given, where: str) -> Graded:
    mod = kind_module(problem.kind)
    w = work(problem)
    expected = mod.items(w.answer, problem.spec, w)
    total = len(expected)
    if given is None:
        wrong = [Wrong(i, q, "no answer", mod.show(e), why)
                 for i, (q, e, why) in enumerate(zip(w.questions, expected, w.why), 1)]
        return Graded(problem.number, problem.kind, 0, total, wrong, answered=False)
    try:
        got = mod.items(given, problem.spec, w)
    except AnswerError as e:
        raise EmuError(f"{where}: problem {problem.number}: {e}") from None
    wrong = [Wrong(i, q, mod.show(g), mod.show(e), why)
             for i, (q, g, e, why) in enumerate(zip(w.questions, got, expected, w.why), 1)
             if g != e]
    return Graded(problem.number, problem.kind, total - len(wrong), total, wrong)


def report_text(head: dict, graded: list[Graded]) -> str:
    right = sum(g.right for g in graded)
    total = sum(g.total for g in graded)
    what = "every kind in turn" if head["kind"] == "all" else head["kind"]
    out = [f"emu quiz · {what} · seed {head['seed']} · difficulty {head['difficulty']}: "
           f"{right} of {total} right ({100 * right // total}%)"]
    for g in graded:
        state = "" if g.answered else " (not answered)"
        out.append(f"problem {g.number} ({g.kind}): {g.right} of {g.total}{state}")
        for x in g.wrong:
            out.append(f"  {x.question}. {x.text}: you said {x.given}; right: {x.expected}"
                       f" -- {x.why}")
    return "\n".join(out) + "\n"


def report_json(head: dict, graded: list[Graded]) -> dict:
    right = sum(g.right for g in graded)
    total = sum(g.total for g in graded)
    return {"format": FORMAT + "-grade", "version": QUIZ_VERSION, **head,
            "right": right, "total": total,
            "problems": [{"number": g.number, "kind": g.kind, "right": g.right,
                          "total": g.total, "answered": g.answered,
                          "wrong": [{"question": x.question, "text": x.text,
                                     "given": x.given, "expected": x.expected, "why": x.why}
                                    for x in g.wrong]}
                         for g in graded]}
