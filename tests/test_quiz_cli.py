"""``emu quiz`` as a user meets it: the formats, --check, --open, --source,
bad input (one line, exit 2 for usage and 1 for input), and the same bytes
for the same seed in processes with different hash seeds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from emu.cli import main
from emu.quiz import make, work


def quiz(capsys, *args):
    code = main(["quiz", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(capsys, code: int, *args) -> str:
    got, _, err = quiz(capsys, *args)
    assert got == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_text_names_the_quiz_and_each_problem(capsys):
    code, out, _ = quiz(capsys, "--kind", "translate", "--seed", 3)
    assert code == 0
    assert out.startswith("emu quiz · translate · seed 3 · difficulty 1 · 1 problem · "
                          "quiz version 1\n\nProblem 1 · translate\n")
    assert "Questions:\n  1. " in out and "Answers:" not in out
    assert out.rstrip().endswith("(watch it: emu quiz --kind translate --seed 3 "
                                 "--difficulty 1 --open 1)")


def test_all_kinds_in_turn_by_default(capsys):
    code, out, _ = quiz(capsys, "--seed", 5, "--solve")
    assert code == 0
    heads = [line for line in out.splitlines() if line.startswith("Problem ")]
    assert heads == ["Problem 1 · translate", "Problem 2 · six-steps", "Problem 3 · nested-walk",
                     "Problem 4 · tlb", "Problem 5 · ad-shadow", "Problem 6 · cost"]
    assert out.count("Answers:") == 6


def test_markdown_is_a_handout_with_answers_at_the_end(capsys):
    code, out, _ = quiz(capsys, "--kind", "tlb", "--seed", 2, "--count", 2, "--format",
                        "markdown", "--solve")
    assert code == 0
    assert out.startswith("# emu quiz: `tlb`, seed 2, difficulty 1\n")
    assert out.count("\n## Problem ") == 2 and out.count("```text") >= 4
    assert out.index("## Answers") > out.index("## Problem 2: tlb")
    assert "### Problem 2: tlb\n\n1. miss" in out or "### Problem 2: tlb\n\n1. hit" in out


def test_markdown_renders_as_the_handout_it_means(capsys):
    # CommonMark (markdown-it, what rich renders Markdown with): headings,
    # paragraphs, lists, code blocks and spans, the bold state lines; no
    # stray emphasis and no HTML tag out of the text (the cost's vmm_<step>).
    from markdown_it import MarkdownIt
    code, out, _ = quiz(capsys, "--seed", 3, "--count", 12, "--difficulty", 2, "--format",
                        "markdown", "--solve")
    assert code == 0
    html = MarkdownIt("commonmark").render(out)
    assert sorted(set(re.findall(r"</?([a-z0-9]+)", html))) == [
        "code", "h1", "h2", "h3", "li", "ol", "p", "pre", "strong"]
    assert "<em>" not in html and "vmm_&lt;step&gt; = the VMM's steps" in html
    assert out.count("```") % 2 == 0


def test_json_has_the_schema_check_reads(capsys):
    code, out, _ = quiz(capsys, "--kind", "six-steps", "--seed", 1, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert {k: data[k] for k in ("format", "version", "kind", "seed", "difficulty", "count")} \
        == {"format": "emu-quiz", "version": 1, "kind": "six-steps", "seed": 1,
            "difficulty": 1, "count": 1}
    (p,) = data["problems"]
    assert (p["number"], p["kind"], p["answer"]) == (1, "six-steps", None)
    assert set(p["state"]) >= {"cr3", "guest", "shadow", "pmap", "tlb", "access", "before"}
    assert len(p["questions"]) == 4


def solved(capsys, tmp_path, *args):
    code, out, _ = quiz(capsys, *args, "--format", "json", "--solve")
    assert code == 0
    path = tmp_path / "answers.json"
    path.write_text(out)
    return path, json.loads(out)


def test_check_scores_the_solvers_own_answers_full(capsys, tmp_path):
    path, _ = solved(capsys, tmp_path, "--seed", 4, "--difficulty", 2)
    code, out, _ = quiz(capsys, "--check", path)
    assert code == 0
    total = sum(len(work(make(k, 4, n, 2)).questions) for n, k in enumerate(
        ["translate", "six-steps", "nested-walk", "tlb", "ad-shadow", "cost"], 1))
    assert out.splitlines()[0] == (f"emu quiz · every kind in turn · seed 4 · difficulty 2: "
                                   f"{total} of {total} right (100%)")


def test_check_gives_the_right_answer_and_why_for_each_wrong_one(capsys, tmp_path):
    path, data = solved(capsys, tmp_path, "--kind", "translate", "--seed", 7)
    accesses = data["problems"][0]["answer"]["accesses"]
    right = accesses[0]
    accesses[0] = {"error_code": 99} if "pa" in right else {"pa": "0x1234"}
    path.write_text(json.dumps(data))
    code, out, _ = quiz(capsys, "--check", path)
    assert code == 5
    lines = out.splitlines()
    n = len(accesses)
    assert lines[0] == f"emu quiz · translate · seed 7 · difficulty 1: {n - 1} of {n} right " \
                       f"({100 * (n - 1) // n}%)"
    assert lines[1] == f"problem 1 (translate): {n - 1} of {n}"
    w = work(make("translate", 7, 1, 1))
    said = "#PF error code 0x63" if "pa" in right else "pa 0x00001234"
    expected = w.solution[0].replace("#PF, error code", "#PF error code").split(" [")[0]
    assert lines[2] == (f"  1. {w.questions[0]}: you said {said}; right: {expected} -- "
                        f"{w.why[0]}")
    assert len(lines) == 3


def test_check_counts_an_unanswered_problem_wrong(capsys, tmp_path):
    code, out, _ = quiz(capsys, "--kind", "nested-walk", "--seed", 2, "--format", "json")
    path = tmp_path / "blank.json"
    path.write_text(out)
    code, out, _ = quiz(capsys, "--check", path, "--format", "json")
    assert code == 5
    report = json.loads(out)
    assert (report["right"], report["total"]) == (0, 3)
    assert report["problems"][0]["answered"] is False
    assert [w["given"] for w in report["problems"][0]["wrong"]] == ["no answer"] * 3


@pytest.mark.parametrize("args, message", [
    (["--kind", "nope"], "argument --kind: invalid choice: 'nope'"),
    (["--seed", "-1"], "argument --seed: --seed must be between 0 and 2**63 - 1, not -1"),
    (["--seed", "x1"], "argument --seed: 'x1' is not a number"),
    (["--difficulty", "4"], "argument --difficulty: --difficulty must be between 1 and 3, not 4"),
    (["--count", "0"], "argument --count: --count must be between 1 and 100, not 0"),
    (["--check", "a.json", "--solve"], "--check takes no --solve"),
    (["--check", "a.json", "--open", "1"], "--check and --open do not go together"),
    (["--mode", "shadow"], "--mode, --script and --width go with --open"),
])
def test_bad_usage_is_one_line_and_exit_2(capsys, args, message):
    line = one_line(capsys, 2, *args)
    assert line.startswith("emu: error: ") and message in line


def test_bad_answer_files_are_one_line_and_exit_1(capsys, tmp_path):
    missing = tmp_path / "none.json"
    assert one_line(capsys, 1, "--check", missing) == \
        f"emu: error: cannot read {missing}: No such file or directory"
    bad = tmp_path / "bad.json"
    bad.write_text("{\"format\": ")
    assert one_line(capsys, 1, "--check", bad).startswith(
        f"emu: error: {bad}:1:12: not valid JSON: ")
    cases = [
        ([1, 2], "expected a JSON object"),
        ({"format": "other"}, "not an emu quiz (its 'format' must be \"emu-quiz\")"),
        ({"format": "emu-quiz", "version": 9, "kind": "tlb", "seed": 1, "difficulty": 1,
          "problems": []}, "made by quiz version 9; this emu makes version 1"),
        ({"format": "emu-quiz", "version": 1, "kind": "tlb", "seed": 1, "difficulty": 1,
          "problems": []}, "'problems' is empty: nothing to grade"),
        ({"format": "emu-quiz", "version": 1, "kind": "tlb", "seed": 1, "difficulty": 7,
          "problems": [{"number": 1, "answer": None}]}, "'difficulty' must be 1, 2 or 3"),
        ({"format": "emu-quiz", "version": 1, "kind": "tlb", "seed": 1, "difficulty": 1,
          "problems": [{"number": 1, "answer": {"accesses": "hit"}}]},
         "problems[0]: problem 1: 'accesses' must be a list, not \"hit\""),
        ({"format": "emu-quiz", "version": 1, "kind": "all", "seed": 1, "difficulty": 1,
          "problems": [{"number": 2, "kind": "tlb", "answer": None}]},
         "problem 2 of this quiz is a six-steps problem, not tlb"),
    ]
    for data, message in cases:
        bad.write_text(json.dumps(data))
        line = one_line(capsys, 1, "--check", bad)
        assert line.startswith(f"emu: error: {bad}") and message in line, line


def test_open_stops_where_the_answer_happens(capsys, tmp_path):
    seed = next(s for s in range(50)
                if work(make("six-steps", s, 1, 1)).answer["outcome"] == "hidden")
    script = tmp_path / "s.txt"
    script.write_text("micro\nmicro\n")
    code, out, _ = quiz(capsys, "--kind", "six-steps", "--seed", seed, "--open", 1,
                        "--script", script)
    assert code == 0
    first, _, after = out.split("(emu) micro")
    assert "hidden fault · va" in first and "step 3 of 6" in first
    assert f"six-steps seed {seed} problem 1 (difficulty 1): stopped where the VMM " \
           "classifies" in first
    assert "step 4 of 6" in after and "▶ 4 the VMM writes the shadow entry" in after


@pytest.mark.parametrize("kind, where, stop", [
    ("translate", "code · eip 0x0000157a <a1>", "stopped at access 1: 'step' runs it"),
    ("nested-walk", "EPT violation · va 0x61711d80 (read) · step 1 of 6",
     "stopped at the question's 2D walk"),
    ("tlb", "code · eip 0x000012cf <a1>", "stopped at access 1; 'step' runs one"),
    ("ad-shadow", "code · eip 0x000012bd <a1>", "stopped at access 1; 'next' runs to its exit"),
    ("cost", "code · eip 0x00001316 <a4>", "stopped at the trace's first step"),
])
def test_open_every_kind_at_its_question(capsys, tmp_path, kind, where, stop):
    script = tmp_path / "s.txt"
    script.write_text("")
    code, out, _ = quiz(capsys, "--kind", kind, "--seed", 4, "--difficulty", 2, "--open", 1,
                        "--script", script, "--width", 200)
    assert code == 0
    assert where in out
    assert f"> {kind} seed 4 problem 1 (difficulty 2): {stop}" in out


def test_source_is_a_program_emu_run_runs(capsys, tmp_path):
    code, out, _ = quiz(capsys, "--kind", "translate", "--seed", 9, "--source", 1)
    assert code == 0 and out.startswith("; emu quiz: translate seed 9 problem 1")
    program = tmp_path / "p.s"
    program.write_text(out)
    code = main(["run", str(program), "--quiet", "--mode", "nested"])
    console, _ = capsys.readouterr()
    assert code == 0
    answers = work(make("translate", 9, 1, 1)).answer["accesses"]
    lines = console.splitlines()
    assert len(lines) == len(answers)
    for n, (line, a) in enumerate(zip(lines, answers), 1):
        if "error_code" in a:
            assert line == f"{n}: #PF error {a['error_code']:#010x}"
        else:
            assert line in (f"{n}: read {a['pa']:#010x}", f"{n}: fetched {a['pa']:#010x}",
                            f"{n}: wrote")


# Every format of one quiz of each kind in turn, in one process.
EVERY_FORMAT = """
import sys
from emu.cli import main
for fmt in ("json", "markdown", "text"):
    main(["quiz", "--seed", "11", "--difficulty", "3", "--solve", "--format", fmt])
    sys.stdout.write("\\f")
"""


def test_the_same_seed_gives_the_same_bytes_in_any_process():
    outs = []
    for hashseed in ("1", "4242"):
        done = subprocess.run([sys.executable, "-c", EVERY_FORMAT], capture_output=True,
                              timeout=300, env=dict(os.environ, PYTHONHASHSEED=hashseed))
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout)
    assert outs[0] == outs[1]
    as_json, markdown, text, rest = outs[0].decode().split("\f")
    assert rest == ""
    assert len(json.loads(as_json)["problems"]) == 6
    assert markdown.count("\n## Problem ") == 6 and text.count("\nProblem ") == 6


def test_a_dropped_spte_is_not_present_in_the_answer_and_the_state(capsys):
    # The VMM leaves a stale record (its own note, P=0) where it drops an
    # spte: the answer and the state show the entry as the hardware sees
    # it, not present -- a student cannot know the VMM's note.
    code, out, _ = quiz(capsys, "--kind", "six-steps", "--seed", "11", "--difficulty", "3",
                        "--solve")
    assert code == 0
    assert "spte at ma 0x0000c890: 0x0000b067 -> 0x00000000" in out
    assert "why: gpte written; gpte A and D; spte dropped (not present); spte written" in out
    code, out, _ = quiz(capsys, "--kind", "six-steps", "--seed", "11", "--difficulty", "3",
                        "--solve", "--format", "json")
    assert code == 0 and json.loads(out)
    assert str(0x00228246) not in out and "0x00228246" not in out   # (the stale record)


def test_a_number_in_an_answer_is_ascii_digits_as_python_writes_them():
    from emu.quiz.answers import AnswerError, number
    assert [number(v, "pa") for v in (31, "31", " 0x1f ", "0b11111", "0x0010_0000")] == [
        31, 31, 31, 31, 0x100000]
    for bad in ("\uff11\uff12", "\u0661\u0662", "0x__1", "1__0", "12a", "", True, 1.5, -1):
        with pytest.raises(AnswerError):
            number(bad, "pa")
