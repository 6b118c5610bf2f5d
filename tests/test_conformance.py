"""The conformance runner: the public IA-32 paging vectors, and its own errors."""

import json
from pathlib import Path

from emu.devtools.conformance import main, run_vector

PUBLIC = Path(__file__).parent / "conformance" / "ia32-paging-public.jsonl"


def vectors():
    return [json.loads(line) for line in PUBLIC.read_text().splitlines() if line.strip()]


def first(pred):
    return next(v for v in vectors() if pred(v))


def test_all_public_vectors_pass(capsys):
    assert main([str(PUBLIC)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "300 passed, 0 failed"


def test_run_vector_of_a_passing_vector_is_empty():
    assert run_vector(first(lambda v: v["access"].get("straddle"))) == []


def test_corrupted_expectation_fails_with_a_diff_naming_the_field(tmp_path, capsys):
    vec = first(lambda v: v["expect"]["fault"])
    vec["expect"]["error_code"] ^= 0x4
    path = tmp_path / "one.jsonl"
    path.write_text("\n" + json.dumps(vec) + "\n\n")     # blank lines are tolerated
    assert main([str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "0 passed, 1 failed"
    assert out[0].startswith(f"{vec['id']} [{vec['class']}] error_code: expected ")


def test_corrupted_entries_after_names_the_entry(tmp_path, capsys):
    vec = first(lambda v: not v["expect"]["fault"] and v["expect"]["entries_after"])
    vec["expect"]["entries_after"] = []
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(vec) + "\n")
    assert main([str(path)]) == 1
    assert "entries_after[0x" in capsys.readouterr().out


def test_missing_file_exits_2_with_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope.jsonl")]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "nope.jsonl" in out[0]


def test_malformed_line_exits_2_naming_the_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(PUBLIC.read_text().splitlines()[0] + "\n{not json\n")
    assert main([str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and f"{path}:2: malformed JSON" in out[0]


def test_line_that_is_not_a_vector_exits_2_naming_the_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "x"}\n')
    assert main([str(path)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and f"{path}:1: malformed vector: missing field" in out[0]
