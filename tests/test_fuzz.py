"""The front door under fire: the assembler and the command line against
random and mutated sources, binary garbage, huge files, include loops,
devices and absurd options; garbage guests in every mode.

A bounded, seeded campaign of ``emu.devtools.fuzz`` runs here;
``python -m emu.devtools.fuzz --seconds N`` is the long run.  The named
cases below are the kinds of bad input the campaign draws from, each with
the exact message it gets.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emu.cli import main
from emu.devtools import fuzz

ROUNDS = 12          # per seed: about 3 s each


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bounded_fuzz_campaign_finds_nothing(seed, tmp_path):
    f = fuzz.Fuzzer(seed, str(tmp_path))
    for _ in range(ROUNDS):
        f.one_round()
    assert [(x.target, x.what) for x in f.failures] == []
    fig = f.figures
    assert fig["asm"] >= 2 * ROUNDS and fig["cli"] == 2 * ROUNDS and fig["guests"] == ROUNDS
    assert fig["asm_accepted"] + fig["asm_rejected"] == fig["asm"]
    assert fig["invariant_checks"] > 0


def test_the_campaign_is_reproducible_from_its_seed(tmp_path):
    runs = []
    for _ in range(2):
        f = fuzz.Fuzzer(7, str(tmp_path))
        for _ in range(3):
            f.one_round()
        runs.append(dict(f.figures))
    assert runs[0] == runs[1]


def test_the_checker_catches_what_it_must():
    assert fuzz.check_message("emu: error: bad\n", 1) is None
    assert fuzz.check_message("emu: x.s:1:1: error: bad\n    x\n    ^\n", 1) is None
    assert fuzz.check_message("Traceback (most recent call last):\n", 1) == \
        "a traceback on standard error"
    assert fuzz.check_message("emu: internal error: KeyError\n", 70).startswith("internal")
    assert "does not start with 'emu'" in fuzz.check_message("oops\n", 1)


def test_the_fuzz_command_prints_its_figures(tmp_path):
    p = subprocess.run([sys.executable, "-m", "emu.devtools.fuzz", "--seconds", "1",
                        "--seed", "5",
                        "--save", str(tmp_path / "fails")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "emu fuzz: seed 5, 1 s"
    assert lines[1].startswith("emu fuzz: ") and " rounds in " in lines[1]
    assert [x.split(":")[0].strip() for x in lines[2:]] == [
        "assembler", "command line", "garbage guests", "failures"]
    assert lines[-1] == "  failures: 0"


@pytest.mark.parametrize("seconds", ["-3", "0", "nan", "inf", "1e8"])
def test_the_fuzz_command_rejects_a_bad_duration(seconds):
    p = subprocess.run([sys.executable, "-m", "emu.devtools.fuzz", "--seconds", seconds],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.splitlines()[-1] == ("python -m emu.devtools.fuzz: error: "
                                         "--seconds must be "
                                         "more than 0 and at most 10,000,000")


def test_failures_that_cannot_be_saved_are_printed(monkeypatch, capsys):
    def run(self, seconds):
        self.fail("asm", "a made-up failure", b"mov eax,")
    monkeypatch.setattr(fuzz.Fuzzer, "run", run)
    assert fuzz.main(["--seconds", "1", "--seed", "3", "--save", "/dev/null/fails"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["emu fuzz: cannot save the failing inputs to /dev/null/fails: "
                   "Not a directory; they were:", "  asm: a made-up failure"]


# --- named bad inputs: exact messages, in this process ----------------------------------
def emu(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def write(path, data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return str(path)


def test_a_file_that_includes_itself(tmp_path, capsys):
    a = write(tmp_path / "a.s", '%include "a.s"\n')
    code, err = emu(capsys, "asm", a)
    assert code == 1
    assert err.splitlines()[0] == f"emu: {a}:1:10: error: include loop: {a} -> {tmp_path}/a.s"


def test_an_include_loop_through_two_files(tmp_path, capsys):
    write(tmp_path / "b.s", '%include "c.s"\n')
    write(tmp_path / "c.s", '%include "b.s"\n')
    code, err = emu(capsys, "asm", str(tmp_path / "b.s"))
    assert code == 1
    assert err.splitlines()[0].endswith(
        f"error: include loop: {tmp_path}/b.s -> {tmp_path}/c.s -> {tmp_path}/b.s")


def test_a_huge_source_file(tmp_path, capsys):
    big = write(tmp_path / "big.s", b"nop\n" * (300_000))      # 1.2 MB
    code, err = emu(capsys, "run", big)
    assert (code, err) == (1, f"emu: {big}: error: '{big}' is too large for a source file "
                              "(more than 1 MiB)\n")


def test_a_file_included_many_times(tmp_path, capsys):
    write(tmp_path / "part.s", ("; " + "x" * 997 + "\n") * 800)  # 800 KB, included 6 times
    top = write(tmp_path / "top.s", '%include "part.s"\n' * 6)
    code, err = emu(capsys, "asm", top)
    assert code == 1
    assert err.splitlines()[0] == (f"emu: {top}:6:10: error: more than 4 MiB of source "
                                   "with this include (every inclusion counts)")


def test_times_that_would_fill_memory(tmp_path, capsys):
    src = write(tmp_path / "t.s", "times 1048576 nop\n" * 3)
    code, err = emu(capsys, "asm", src)
    assert code == 1
    assert err.splitlines()[0] == (f"emu: {src}:3:1: error: more than 2,097,152 "
                                   "statements emitted (times repetitions counted)")


def test_binary_garbage_shows_one_clean_line(tmp_path, capsys):
    data = bytes(range(256)) * 4
    src = write(tmp_path / "g.s", data)
    code, err = emu(capsys, "run", src)
    assert (code, err) == (1, f"emu: {src}:1:1: error: source contains a NUL byte "
                              "(is this a binary file?)\n")


def test_control_characters_in_an_excerpt_stay_on_one_line(tmp_path, capsys):
    src = write(tmp_path / "c.s", b"mov eax, \x0b\x0c\x1b[2J\xc3\x28\n")
    code, err = emu(capsys, "asm", src)
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == f"emu: {src}:1:16: error: source is not UTF-8 text (byte 0xc3)"
    assert len(lines) <= 3


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("command", ["run", "asm", "step", "compare", "disasm"])
def test_a_device_as_the_program(command, capsys):
    code, err = emu(capsys, command, "/dev/zero")
    assert (code, err) == (1, "emu: /dev/zero: error: '/dev/zero' is not a regular file\n")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_stepper_script(capsys):
    code, err = emu(capsys, "step", "hello", "--script", "/dev/zero")
    assert (code, err) == (1, "emu: error: script /dev/zero holds more than 1 MiB of "
                              "commands\n")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("option", ["--stats-json", "--trace"])
def test_an_output_on_a_full_device_is_an_error_and_the_device_stays(option, capsys):
    before = os.stat("/dev/full")
    code, err = emu(capsys, "run", "hello", "--quiet", option, "/dev/full")
    assert (code, err) == (1, "emu: error: cannot write /dev/full: No space left on device\n")
    after = os.stat("/dev/full")
    assert (after.st_mode, after.st_rdev) == (before.st_mode, before.st_rdev)


@pytest.mark.parametrize("argv, message", [
    (["--max-cycles", "1" + "0" * 30], "--max-cycles must be between 1 and 2**62, not 1"
     + "0" * 30),
    (["--seed", "-1"], "--seed must be between 0 and 2**64 - 1, not -1"),
    (["--share-interval", "-5"], "--share-interval must be between 0 and 2**62 cycles, not -5"),
    (["--swap-latency", "-1"], "--swap-latency must be between 0 and 2**32 cycles, not -1"),
    (["--mem-mib", "nan"], "argument --mem-mib: 'nan' is not a number (see 'emu run --help')"),
    (["--tlb-ways", "9" * 5000], "argument --tlb-ways: '99999999999999999999999999999999999"
     "99...' is not a number (see 'emu run --help')"),
])
def test_absurd_options(argv, message, capsys):
    code, err = emu(capsys, "run", "hello", *argv)
    assert (code, err) == (2, f"emu: error: {message}\n")


def test_an_absurd_choice(capsys):
    # (argparse words the list of choices differently from one Python to another)
    code, err = emu(capsys, "run", "hello", "--mode", "\U0001F600")
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("emu: error: argument --mode: invalid choice: '\U0001F600'")


# --- and in a real process: one line, no traceback, never a hang ------------------------
@pytest.mark.parametrize("argv", [
    ["run", "/dev/zero"],
    ["run", "hello", "--mem-mib", "0x"],
    ["asm", "/"],
    ["step", "hello", "--script", "/"],
])
def test_a_real_process_gets_one_line_and_a_nonzero_status(argv):
    p = subprocess.run([sys.executable, "-m", "emu", *argv], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode in (1, 2)
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("emu")
    assert "Traceback" not in p.stderr + p.stdout


def test_a_guest_kept_going_by_a_stale_tlb_entry_is_not_compared():
    """A rep that zeroes the page directory of its own pages, then a loop:
    natively the 4 MiB entry stays in the TLB (no invlpg), so the guest
    loops until its budget; with every access walking it faults at once,
    as under a VMM that traces the directory.  Both are x86: the checker
    must count it as TLB-dependent, not as a divergence."""
    from emu.asm import assemble
    image = assemble("bits 32\nmov edi, 0x100000\nxor eax, eax\nmov ecx, 1024\nrep stosd\n"
                     "jmp $\n")
    lo, code = image.segments[0]
    f = fuzz.Fuzzer(1)
    f.check_guest(code, paging=True)
    assert [(x.target, x.what) for x in f.failures] == []
    assert (f.figures["guest_budget"], f.figures["guest_tlb_dependent"]) == (1, 1)
