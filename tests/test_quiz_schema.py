"""The quiz's JSON is the schema docs/quiz.md documents (the fields of the
quiz, of each problem, of each kind's state and answer); numbers in answers
are checked (never negative, never wider than 64 bits, never so long that
Python will not read them); the one-line whys count in the singular and the
plural as the numbers say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emu.cli import main
from emu.quiz import DIFFICULTIES, KINDS, make, render, work

DOC = (Path(__file__).resolve().parent.parent / "docs" / "quiz.md").read_text()


def documented_state(kind: str) -> set[str]:
    """The fields the "State, per kind" list names for ``kind``."""
    section = DOC.split("### State, per kind")[1].split("### The report")[0]
    pattern = r"\* `" + re.escape(kind) + r"`: (.*?)(?=\n\* `|\Z)"
    text = re.search(pattern, section, re.S).group(1)
    return set(re.findall(r"`([a-z_0-9]+)`", re.sub(r"\([^)]*\)", "", text)))


def documented_answer(kind: str) -> set[str]:
    """The top-level fields of ``kind``'s answer in the "Answers, per kind" table."""
    row = next(line for line in DOC.splitlines() if line.startswith(f"| `{kind}` | `{{"))
    answer = row.split("|")[2]
    depth, keys = 0, set()
    for token in re.finditer(r'[{}\[\]]|"([a-z_]+)":', answer):
        if token.group(0) in "{[":
            depth += 1
        elif token.group(0) in "}]":
            depth -= 1
        elif depth == 1:
            keys.add(token.group(1))
    return keys


@pytest.mark.parametrize("kind", KINDS)
def test_the_json_has_exactly_the_documented_fields(kind):
    for seed in range(4):
        for difficulty in DIFFICULTIES:
            data = render.as_json(kind, seed, difficulty, [make(kind, seed, 1, difficulty)],
                                  True)
            assert sorted(data) == ["count", "difficulty", "format", "kind", "problems",
                                    "seed", "version"]
            (p,) = data["problems"]
            assert sorted(p) == ["answer", "intro", "kind", "number", "questions", "state"]
            assert set(p["state"]) == documented_state(kind), (seed, difficulty)
            assert set(p["answer"]) == documented_answer(kind), (seed, difficulty)
            assert json.loads(json.dumps(data)) == data


def check_line(capsys, path) -> tuple[int, str]:
    code = main(["quiz", "--check", str(path)])
    _, err = capsys.readouterr()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return code, err.strip()


HEAD = '{"format": "emu-quiz", "version": 1, "kind": "translate", "seed": 1, "difficulty": 1, '


@pytest.mark.parametrize("problems, message", [
    ('[{"number": 1, "answer": {"accesses": [{"pa": -1}, {"pa": 0}, {"pa": 0}, {"pa": 0}]}}]',
     "problem 1: access 1's pa must be between 0 and 2**64 - 1, not -1"),
    ('[{"number": 1, "answer": {"accesses": [{"pa": "0x10000000000000000"}, {"pa": 0}, '
     '{"pa": 0}, {"pa": 0}]}}]',
     "problem 1: access 1's pa must be between 0 and 2**64 - 1, not \"0x10000000000000000\""),
    ('[{"number": 1, "answer": {"accesses": [{"pa": 1' + "0" * 5000 + '}]}}]',
     "a number too long to be a quiz's answer"),
])
def test_numbers_out_of_range_are_one_line_and_exit_1(capsys, tmp_path, problems, message):
    path = tmp_path / "a.json"
    path.write_text(HEAD + '"problems": ' + problems + "}")
    code, line = check_line(capsys, path)
    assert code == 1
    assert line == f"emu: error: {path}: " + ("problems[0]: " if "problem 1" in message
                                              else "") + message


def test_a_seed_too_long_to_read_is_one_line_and_exit_1(capsys, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(HEAD.replace('"seed": 1', '"seed": 1' + "0" * 5000) + '"problems": []}')
    assert check_line(capsys, path) == (
        1, f"emu: error: {path}: a number too long to be a quiz's answer")


def test_the_whys_count_one_in_the_singular():
    cost = work(make("cost", 2, 1, 1))
    assert cost.why[6] == ("1 page allocated and zeroed x 612; shadow: 4 hardware walks; "
                           "exits: 2 pf; faults: 1 dirty, 1 hidden; 1 machine page allocated "
                           "and zeroed")
    assert cost.why[13] == ("1 VM exit x 600; nested: 3 hardware walks; exits: 1 npf; "
                            "faults: 1 nested; 1 machine page allocated and zeroed")
    assert work(make("nested-walk", 4, 1, 1)).why[1] == (
        "1 row of the grid, each a nested walk (npde, npte) unless the NTLB holds the page "
        "(0 hits), plus the guest entries read")
    assert work(make("six-steps", 2, 1, 3)).why[2] == (
        "no fill: the write is emulated (1 guest entry changed, 0 sptes dropped)")


def test_the_why_of_a_filled_spte_says_the_hardware_set_its_a_and_d():
    w = work(make("six-steps", 7, 1, 2))
    assert w.solution[2:] == ["spte at ma 0x0000e3b4 := 0x00010007",
                              "spte at ma 0x0000e3b4: 0x00000000 -> 0x00010067"]
    assert w.why[3] == ("spte written by the VMM as 0x00010007, then A and D set by the "
                        "hardware's walk when the access retries")
