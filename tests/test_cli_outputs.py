"""The command line's rough edges: the --narrate grammar, '-' for every
export, file modes, output paths checked before the guest starts,
narration with several VMs, Ctrl-C, and a program cut off mid-instruction."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from test_cli import emu, one_line_error

from emu.cli import main


def inproc(capsys, *args):
    """``emu ARGS`` in this process (fast): (status, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# --- --narrate ------------------------------------------------------------------------
def test_a_bare_narrate_never_takes_the_program_as_its_value():
    done = emu("run", "--narrate", "hello", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("── hidden fault at va 0x00001000 (fetch, kernel) ── cycle 20\n")
    assert done.stdout.count("── hidden fault") == 2             # every fault in full


def test_narrate_takes_its_value_after_an_equals_sign():
    brief = emu("run", "demand", "--narrate=brief", "--quiet")
    full = emu("run", "demand", "--narrate=full", "--quiet")
    bare = emu("run", "demand", "--narrate", "--quiet")
    assert brief.returncode == full.returncode == bare.returncode == 0
    assert full.stdout == bare.stdout
    assert brief.stdout.count("── hidden fault") == 1
    assert full.stdout.count("── hidden fault") == 38
    assert brief.stdout.count("· hidden fault") == 37


@pytest.mark.parametrize("word", ["brief", "full"])
def test_narrate_with_a_space_is_refused_with_the_right_spelling(word):
    line = one_line_error(emu("run", "demand", "--narrate", word), 2)
    assert line == (f"emu: error: write --narrate={word}: --narrate takes its value after '=' "
                    "(a word after it is a program)")


def test_narrate_with_an_unknown_value():
    line = one_line_error(emu("run", "demand", "--narrate=loud"), 2)
    assert line.startswith("emu: error: argument --narrate: invalid choice: 'loud'")


def test_help_shows_the_optional_value():
    done = emu("run", "--help")
    assert "[--narrate[=brief]]" in done.stdout and "--narrate[=brief]  " in done.stdout


# --- '-' is standard output, for every export -----------------------------------------
@pytest.mark.parametrize("option", ["--stats-json", "--trace", "--stories", "--timeline"])
def test_dash_sends_a_run_export_to_stdout_and_the_rest_to_stderr(option):
    done = emu("run", "hello", option, "-")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Hello from a guest kernel!\nrun poweroff")
    if option in ("--stats-json", "--timeline"):
        data = json.loads(done.stdout)
        assert ("console" in data) if option == "--stats-json" else ("traceEvents" in data)
    else:
        records = [json.loads(line) for line in done.stdout.splitlines()]
        assert records and all(isinstance(r, dict) for r in records)
        if option == "--stories":
            assert [r["kind"] for r in records] == ["hidden", "hidden"]


@pytest.mark.parametrize("option", ["--stats-json", "--trace", "--stories", "--timeline"])
def test_dash_works_with_several_vms(option):
    done = emu("run", "hello", "hello", option, "-")
    assert done.returncode == 0, done.stderr
    assert "[hello#1] Hello from a guest kernel!" in done.stderr
    if option in ("--stats-json", "--timeline"):
        json.loads(done.stdout)
    else:
        assert {json.loads(line).get("vm") for line in done.stdout.splitlines()} == {
            "hello#1", "hello#2"}


def test_dash_for_two_exports_is_refused():
    line = one_line_error(emu("run", "hello", "--trace", "-", "--stats-json", "-"), 2)
    assert line == "emu: error: only one output can be '-' (standard output)"


def test_step_exports_to_dash(tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("step\n")
    done = emu("step", "hello", "--script", script, "--html", "-")
    assert done.returncode == 0 and done.stdout.startswith("<!DOCTYPE html>")
    assert done.stderr.startswith("emu step hello.s")
    line = one_line_error(emu("step", "hello", "--script", script, "--svg", "-", "--html", "-"),
                          2)
    assert line == "emu: error: only one output can be '-' (standard output)"
    line = one_line_error(emu("step", "hello", "--script", script, "--width", "5"), 2)
    assert line == ("emu: error: --width must be at least 60 columns (the code beside the "
                    "registers), not 5")


# --- file modes follow the umask ------------------------------------------------------
def run_with_umask(capsys, mask: int, *args) -> int:
    old = os.umask(mask)
    try:
        return inproc(capsys, *args)[0]
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_output_files_get_the_umasks_mode(tmp_path, capsys, mask, mode):
    outs = {opt: tmp_path / f"out{opt}" for opt in ("--stats-json", "--trace", "--stories",
                                                    "--timeline")}
    assert run_with_umask(capsys, mask, "run", "hello", "--quiet",
                          *[a for opt, p in outs.items() for a in (opt, p)]) == 0
    cmp = tmp_path / "cmp.json"
    assert run_with_umask(capsys, mask, "compare", "hello", "--json", cmp) == 0
    for path in [*outs.values(), cmp]:
        assert path.stat().st_mode & 0o777 == mode, path.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".emu-")]


def test_an_existing_json_file_keeps_its_mode(tmp_path, capsys):
    out = tmp_path / "stats.json"
    out.write_text("old\n")
    out.chmod(0o640)
    assert run_with_umask(capsys, 0o077, "run", "hello", "--quiet", "--stats-json", out) == 0
    assert out.stat().st_mode & 0o777 == 0o640 and json.loads(out.read_text())["console"]


# --- output paths are checked before the guest starts ---------------------------------
RUN_EXPORTS = ["--stats-json", "--trace", "--stories", "--timeline"]


@pytest.mark.parametrize("option", RUN_EXPORTS)
@pytest.mark.parametrize("vms", [1, 2])
def test_an_unwritable_output_is_found_before_the_guest_runs(tmp_path, capsys, option, vms):
    target = tmp_path / "missing" / "out"
    # (demand prints first thing: an empty stdout means it never ran)
    assert inproc(capsys, "run", *["demand"] * vms, option, target) == (
        1, "", f"emu: error: cannot write {target}: No such file or directory\n")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert inproc(capsys, "run", *["demand"] * vms, option, folder) == (
        1, "", f"emu: error: cannot write {folder}: Is a directory\n")


@pytest.mark.parametrize("option", ["--svg", "--html"])
def test_step_checks_its_outputs_before_it_starts(tmp_path, capsys, option):
    target = tmp_path / "missing" / "out"
    assert inproc(capsys, "step", "demand", option, target) == (
        1, "", f"emu: error: cannot write {target}: No such file or directory\n")


# --- narration with several VMs -------------------------------------------------------
def test_narrate_with_several_vms_tells_each_vms_faults_with_its_name():
    done = emu("run", "demand", "hello", "--narrate=brief", "--quiet")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith(("[demand] ", "[hello] ")) for line in lines)
    for name in ("demand", "hello"):
        alone = emu("run", name, "--narrate=brief", "--quiet")
        told = [line[len(name) + 3:] for line in lines if line.startswith(f"[{name}] ")]
        # the same stories, told the same way; only the machine pages differ
        assert list(map(same_but_machine, told)) == list(map(same_but_machine,
                                                             alone.stdout.splitlines()))


def same_but_machine(line: str) -> str:
    import re
    if " at ma " in line:                   # a shadow entry: its frame is an mpn
        line = re.sub(r"= 0x[0-9a-f]{5}(?=[0-9a-f]{3}  P)", "= 0x?????", line)
    return re.sub(r"(mpn|spte|spte :=|ma) 0x[0-9a-f]+", r"\1 ?", line)


# --- Ctrl-C ---------------------------------------------------------------------------
LOOP = """; prints a line, then runs until stopped
org 0x1000
_start:
    mov esp, 0x80000
    mov al, 'g'
    out 0xE9, al
    mov al, 10
    out 0xE9, al
.loop:
    mov [0x2000], eax
    inc eax
    jmp .loop
"""


@pytest.mark.parametrize("vms", [1, 2])
def test_ctrl_c_prints_what_was_measured_and_exits_130(tmp_path, vms):
    src = tmp_path / "loop.s"
    src.write_text(LOOP)
    stats = tmp_path / "stats.json"
    proc = subprocess.Popen([sys.executable, "-m", "emu", "run", *[src] * vms, "--max-cycles",
                             "4000000000", "--stats-json", stats], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()            # the guest runs: now interrupt it
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert first in ("g\n", "[loop#1] g\n", "[loop#2] g\n")
    assert err.endswith("emu: interrupted\n") and "Traceback" not in err
    data = json.loads(stats.read_text())
    if vms == 1:
        assert out.startswith("run interrupted — interrupted (Ctrl-C) after ")
        assert data["outcome"] == "interrupted" and data["instructions"] > 0
        assert f"{data['instructions']:,} instructions" in out
    else:
        assert out.count(" interrupted ") == 2 and "host" in out
        assert [vm["outcome"] for vm in data["vms"]] == ["interrupted"] * 2


# --- a program cut off in the middle of an instruction --------------------------------
@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
def test_a_program_cut_off_mid_instruction_ends_in_one_line(tmp_path, capsys, mode):
    src = tmp_path / "cut.s"
    src.write_text("org 0x1000\n_start:\n    mov eax, 1\n    db 0x02, 0x00\n")  # half a mov
    line = ("emu: crash: #UD invalid opcode at eip 0x0000100c with no IDT loaded -> "
            "#GP general protection (error code 0x33) -> double fault -> triple "
            "fault: the machine shut down\n")
    assert inproc(capsys, "run", src, "--quiet", "--mode", mode) == (3, "", line)
    code, out, err = inproc(capsys, "run", src, "--quiet", "--mode", mode, "--narrate")
    assert (code, err) == (3, line)
    for text in out.splitlines():                # only narration: no raw event text
        assert text.startswith(("──", " ", "·")), text
