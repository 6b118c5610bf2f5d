"""The command line as a user meets it: exit codes, one-line errors, files."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from emu.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "expected"


def emu(*args, cwd=None):
    """Run ``python -m emu ARGS`` as a user would; returns the process."""
    return subprocess.run([sys.executable, "-m", "emu", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def one_line_error(done, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_run_prints_the_guest_console_and_a_summary():
    done = emu("run", "hello")
    assert done.returncode == 0
    assert done.stdout.startswith("Hello from a guest kernel!\n")
    assert "run poweroff" in done.stdout and "instructions" in done.stdout


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_output_without_unicode_gets_question_marks_not_a_crash(encoding):
    # A terminal in Latin-1 or an ASCII locale: the dash of the summary and
    # the narration's rules are written as '?', and the tables are drawn
    # in ASCII.
    env = dict(os.environ, PYTHONIOENCODING=encoding)
    done = subprocess.run([sys.executable, "-m", "emu", "run", "hello", "--narrate"],
                          capture_output=True, text=True, env=env, encoding=encoding)
    assert (done.returncode, done.stderr) == (0, "")
    assert "\nrun poweroff ? powered off with status 0\n" in done.stdout
    assert "?? hidden fault at va 0x00001000 (fetch, kernel) ?? cycle 20\n" in done.stdout
    done = subprocess.run([sys.executable, "-m", "emu", "step", "demand"], input="n\nq\n",
                          capture_output=True, text=True, env=env, encoding=encoding)
    assert (done.returncode, done.stderr) == (0, "")
    dot = "?" if encoding == "ascii" else "\u00b7"     # (Latin-1 has the middle dot)
    assert f"+- code {dot} eip 0x00001000 <_start> --" in done.stdout


def test_quiet_prints_only_the_console():
    done = emu("run", "hello", "--quiet", "--mode", "native")
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "Hello from a guest kernel!\n", "")


def test_the_exit_status_is_the_guests():
    assert emu("run", "exceptions", "--quiet").returncode == 10


def test_a_missing_file():
    line = one_line_error(emu("run", "no_such_program.s"), 1)
    assert line == ("emu: error: no_such_program.s: no such file (and no bundled guest "
                    "program of that name; 'emu list' shows them)")


def test_a_directory(tmp_path):
    line = one_line_error(emu("run", tmp_path), 1)
    assert line == f"emu: error: {tmp_path} is a directory, not a program"


def test_a_syntax_error_names_file_line_column_with_a_caret(tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("org 0x1000\n_start:\n    mov eax, [ebx +]\n")
    done = emu("run", src)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    first, text, caret = done.stderr.rstrip("\n").splitlines()
    assert first.startswith(f"emu: {src}:3:")
    assert text == "        mov eax, [ebx +]"
    assert caret.strip() == "^"


def test_garbage_bytes(tmp_path):
    src = tmp_path / "garbage.s"
    src.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(emu("run", src), 1)
    assert line.startswith(f"emu: {src}")
    assert "error" in line


def test_an_unknown_option():
    # (the help to read is the command's)
    line = one_line_error(emu("run", "hello", "--frobnicate"), 2)
    assert line == ("emu: error: unrecognized arguments: --frobnicate "
                    "(see 'emu run --help')")
    line = one_line_error(emu("quiz", "-s", "7"), 2)
    assert line == "emu: error: unrecognized arguments: -s 7 (see 'emu quiz --help')"
    line = one_line_error(emu("--frobnicate"), 2)
    assert line == "emu: error: unrecognized arguments: --frobnicate (see 'emu --help')"


@pytest.mark.parametrize("args,needle", [
    (["--mode", "turbo"], "argument --mode: invalid choice: 'turbo'"),
    (["--mem-mib", "0"], "argument --mem-mib: '0' must be positive"),
    (["--mem-mib", "lots"], "argument --mem-mib: 'lots' is not a number"),
    (["--mem-mib", "4096"], "--mem-mib must be between 1 and 1024, not 4096"),
    (["--tlb-ways", "3"], "--tlb-ways must divide --tlb-entries"),
    (["--tlb-entries", "48", "--tlb-ways", "4"],
     "--tlb-entries / --tlb-ways must be a power of two"),
    (["--shadow-policy", "magic"], "argument --shadow-policy: invalid choice: 'magic'"),
])
def test_bad_option_values(args, needle):
    line = one_line_error(emu("run", "hello", *args), 2)
    assert needle in line


def test_no_command_arguments_is_the_demo():
    done = emu()
    assert done.returncode == 0
    assert "shadow paging, narrated" in done.stdout
    assert "── hidden fault" in done.stdout and "── true fault" in done.stdout
    assert "demand: all processes done after 12 page-ins" in done.stdout


def test_stats_json_has_the_promised_fields(tmp_path):
    out = tmp_path / "stats.json"
    assert emu("run", "syscalls", "--quiet", "--stats-json", out).returncode == 94
    data = json.loads(out.read_text())
    for key in ("mode", "outcome", "exit_status", "console", "instructions", "cycles",
                "host_seconds", "registers", "guest_memory_sha256", "stats"):
        assert key in data, key
    assert (data["mode"], data["outcome"], data["exit_status"]) == ("shadow", "poweroff", 94)
    assert set(data["registers"]) >= {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi",
                                      "edi", "eip", "eflags", "cr0", "cr3"}
    assert len(data["guest_memory_sha256"]) == 64
    assert data["stats"]["timer"]["ticks"] == 12
    assert {"cpu", "mmu", "vmm", "timer", "console"} <= set(data["stats"])


def test_stats_json_that_cannot_be_written_loses_nothing(tmp_path):
    target = tmp_path / "missing_dir" / "stats.json"
    line = one_line_error(emu("run", "hello", "--quiet", "--stats-json", target), 1)
    assert line.startswith(f"emu: error: cannot write {target}")
    assert not target.exists()


def test_a_previous_stats_file_survives_a_failed_run(tmp_path):
    out = tmp_path / "stats.json"
    out.write_text("previous\n")
    one_line_error(emu("run", "no_such_program.s", "--stats-json", out), 1)
    assert out.read_text() == "previous\n"


def test_a_triple_fault_is_a_crash_report(tmp_path):
    src = tmp_path / "triple.s"
    src.write_text("org 0x1000\n_start:\n    mov eax, 0\n    div eax\n")   # no IDT at all
    done = emu("run", src, "--quiet")
    line = one_line_error(done, 3)
    assert line == ("emu: crash: #DE divide error at eip 0x00001006 (triple.s:4: `div eax`) "
                    "with no IDT loaded -> double fault -> triple fault: the machine shut down")


def test_a_runaway_loop_stops_at_the_budget(tmp_path):
    src = tmp_path / "loop.s"
    src.write_text("org 0x1000\n_start:\n    jmp _start\n")
    line = one_line_error(emu("run", src, "--quiet", "--max-cycles", "100000"), 4)
    assert line == ("emu: budget: cycle budget of 100,000 cycles exhausted "
                    "(a runaway guest? raise it with --max-cycles)")


def test_list_shows_the_bundled_programs():
    done = emu("list")
    assert done.returncode == 0
    assert "demand" in done.stdout and "hello" in done.stdout
    hello = [line for line in done.stdout.splitlines() if line.startswith("hello ")]
    assert hello == [f"{'hello':20s} the smallest kernel -- print a line and power off"]
    # then the lab's guests, which run by name too
    lab = done.stdout.split("\nthe lab's guests (emu lab):\n")[1].splitlines()
    assert lab[0] == f"{'lab_dirty':20s} the guest's accessed and dirty bits, exact"
    assert emu("run", lab[0].split()[0], "--quiet").returncode == 0


def test_asm_listing_and_binary(tmp_path):
    done = emu("asm", "hello")
    assert done.returncode == 0 and "_start:" in done.stdout and "out CONSOLE, eax" in done.stdout
    out = tmp_path / "hello.bin"
    done = emu("asm", "hello", "-o", out)
    assert done.returncode == 0 and out.stat().st_size > 0
    dis = emu("disasm", out, "--org", "0x1000")
    assert dis.returncode == 0 and "mov esp, 0x80000" in dis.stdout


@pytest.mark.parametrize("args,status,message", [
    (["/dev/zero", "--org", "0"], 1, "emu: error: /dev/zero: not a regular file"),
    (["{tmp}", "--org", "0"], 1, "emu: error: {tmp}: a directory, not a binary"),
    (["{big}", "--org", "0"], 1, "emu: error: {big}: too large to disassemble (more than 1 MiB)"),
    (["{bin}", "--org", "0xfffffff0"], 1,
     "emu: error: {bin}: 32 bytes at 0xfffffff0 go past the 4 GiB address space"),
    (["{bin}", "--org", "zz"], 2,
     "emu: error: argument --org: not an address: 'zz' (see 'emu disasm --help')"),
    (["{bin}", "--org", "-5"], 2, "emu: error: argument --org: -5 is outside the 32-bit "
     "address space (see 'emu disasm --help')"),
    (["{bin}", "--org", "0x100000000"], 2, "emu: error: argument --org: 0x100000000 is "
     "outside the 32-bit address space (see 'emu disasm --help')"),
])
def test_disasm_of_a_raw_binary_refuses_what_it_cannot_list(tmp_path, args, status, message):
    names = {"tmp": tmp_path, "big": tmp_path / "big.bin", "bin": tmp_path / "small.bin"}
    names["big"].write_bytes(bytes((1 << 20) + 1))
    names["bin"].write_bytes(bytes(32))
    done = emu("disasm", *(a.format(**names) for a in args))
    assert (done.returncode, done.stdout, done.stderr) == (status, "",
                                                            message.format(**names) + "\n")


def test_the_narrated_demand_run_is_recorded(capsys):
    assert main(["run", "demand", "--narrate", "--quiet", "--mode", "shadow"]) == 0
    assert capsys.readouterr().out == (EXPECTED / "demand.narrate.txt").read_text()


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
def test_a_quiet_run_imports_neither_numpy_nor_rich(mode):
    # Start-up is most of a small guest's run: emu run --quiet loads only
    # what running a guest needs (numpy serves the lab's referee, rich the
    # tables and the stepper).
    code = ("import sys\nfrom emu.cli import main\n"
            f"status = main(['run', 'hello', '--quiet', '--mode', '{mode}'])\n"
            "print(status, sorted(m for m in ('numpy', 'rich') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


@pytest.mark.parametrize("command", ["run", "compare", "step", "gdb"])
def test_every_command_that_runs_a_program_reads_its_emu_options_line(command):
    """bad_runaway's line gives it a 2,000,000-cycle budget and the cycle
    clock; the command line's own option wins."""
    from emu.cli import build_parser, with_program_options
    argv = [command, "bad_runaway"]
    args = with_program_options(argv, build_parser().parse_args(argv))
    assert (args.max_cycles, args.clock) == (2_000_000, "cycles")
    argv = [command, "bad_runaway", "--max-cycles", "5000"]
    args = with_program_options(argv, build_parser().parse_args(argv))
    assert args.max_cycles == 5000


def _course(tmp_path):
    """A program in prog/ whose %include and incbin files are in lib/."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "prog").mkdir()
    (tmp_path / "lib" / "course.inc").write_text("STATUS equ 7\n")
    (tmp_path / "lib" / "table.bin").write_bytes(b"\x05")
    program = tmp_path / "prog" / "p.s"
    program.write_text('bits 32\n%include "kernel.inc"\n%include "course.inc"\norg 0x1000\n'
                       '_start:\n    mov eax, STATUS\n    add eax, [table]\n'
                       '    out POWER, eax\ntable: incbin "table.bin"\n')
    return program, tmp_path / "lib"


def test_include_directories_are_searched_after_the_programs_own(tmp_path, capsys):
    program, lib = _course(tmp_path)
    assert main(["run", str(program), "--quiet"]) == 1
    assert "include file 'course.inc' not found" in capsys.readouterr().err
    assert main(["run", str(program), "-I", str(lib), "--quiet"]) == 12
    assert main(["run", str(program), str(program), "--include", str(lib), "--quiet"]) == 12
    capsys.readouterr()
    assert main(["asm", "-I", str(lib), str(program)]) == 0
    assert "mov eax, STATUS" in capsys.readouterr().out
    assert main(["disasm", str(program), "-I", str(lib)]) == 0
    assert "mov eax, 7" in capsys.readouterr().out
    assert main(["compare", str(program), "-I", str(lib), "--mode", "shadow"]) == 0
    script = tmp_path / "q.txt"
    script.write_text("q\n")
    assert main(["step", str(program), "-I", str(lib), "--script", str(script)]) == 0
    from emu.cli import build_parser
    assert build_parser().parse_args(["gdb", "p.s", "-I", "a", "-I", "b"]).include == ["a", "b"]


def test_an_include_directory_that_is_not_there(tmp_path):
    program, _ = _course(tmp_path)
    line = one_line_error(emu("run", program, "-I", tmp_path / "nope"), 1)
    assert line == f"emu: error: -I {tmp_path / 'nope'}: no such directory"


def test_a_control_character_in_a_name_stays_on_one_line(tmp_path):
    line = one_line_error(emu("run", "a\nb.s"), 1)
    assert line == ("emu: error: a\\nb.s: no such file (and no bundled guest program of "
                    "that name; 'emu list' shows them)")
    assert one_line_error(emu("asm", "hello", "-I", "x\x1by"), 1) == \
        "emu: error: -I x\\x1by: no such directory"
