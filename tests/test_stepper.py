"""The stepper (``emu step``) driven by scripts, compared with recorded screens.

Each scripted session runs the demand-paging guest (guest_programs/demand.s)
and its whole output -- the screens, 100 columns, no colour -- is compared
with tests/expected/stepper_<name>.txt.  ``EMU_REGEN=1 pytest
tests/test_stepper.py`` records them again (read the diff before committing).
"""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import pytest
from rich.console import Console

from emu.cli import load
from emu.system import MODES, Config
from emu.ui.progress import ProgressLine
from emu.ui.session import Session
from emu.ui.stepper import HEIGHT, WIDTH, Stepper

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPECTED = ROOT / "tests" / "expected"
REGEN = bool(os.environ.get("EMU_REGEN"))

SCRIPTS = {
    # A hidden fault (guest paging on), every step with micro.
    "hidden": ("shadow", """
        break exit cr0_write
        continue
        delete 1
        next
        micro
        micro
        micro
        micro
        micro
        micro
        micro
        micro
    """),
    # A true fault: the first push of a user process; then its handler.
    "true": ("shadow", """
        break user_main+0x10
        continue
        next
        micro
        micro
        micro
        micro
        micro
        micro
        step
    """),
    # A tracing fault: the guest's #PF handler writes the PTE.
    "tracing": ("shadow", """
        break page_fault.page_in+0x43
        continue
        next
        micro
        micro
        micro
        micro
        micro
        micro
        micro
        micro
        step
    """),
    # Back across a fault: a step over a hidden fault undone, redone;
    # back from the middle of a fault to before it; back to the start.
    "back": ("shadow", """
        break exit cr0_write
        continue
        step 3
        back
        step 3
        next
        micro
        micro
        back 3
        back 10
    """),
    # Every view, in the middle of a fault in a user process.
    "views": ("shadow", """
        break user_main+0x10
        continue
        step
        next
        micro
        micro
        micro
        micro
        tlb
        pt
        pt 0x7ffffc
        spt
        spt 0x400000
        pmap
        mem va esp 32
        mem pa 0x102000 16
        mem ma 0x4000 16
        mem va user_main
        stats
        trace 12
    """),
    # Breakpoints of each kind, listed, hit, deleted; bad ones refused.
    "breaks": ("shadow", """
        break fault hidden
        break exit cr3_write
        break write 0x480000
        break print_pid
        break
        continue
        delete 1
        continue
        continue
        delete 4
        continue
        break
        continue
        delete all
        break fault nosuch
        break exit nosuch
        break nosuch+4
        break fault tracing
        continue
        micro
    """),
    # Natively: no VMM, no shadow, no PMap.
    "native": ("native", """
        next
        micro
        micro
        spt
        pmap
        break exit pf
        break fault hidden
        break fault pf
        break write 0x480000
        continue
        continue
        back 2
        stats
    """),
    # Nested paging: EPT violations on a fetch and on a write, labelled so.
    "nested": ("nested", """
        break fault nested
        continue
        continue
        micro
        micro
        micro
        delete 1
        break 0x400000
        continue
        next
        micro
    """),
    # Help, and errors that do not end the session.
    "errors": ("shadow", """
        help
        help break
        frobnicate
        step many
        step 0
        mem va
        mem xa 0x1000
        mem va 0xdead0000
        mem pa 0x7fffffff
        delete 9
        back
        quit
        step
    """),
}


def script_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines()]


def run_script(mode: str, text: str) -> str:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, height=HEIGHT, color_system=None,
                      force_terminal=False, highlight=False, emoji=False)
    session = Session(load("demand"), Config(mode=mode))
    Stepper(session, console, height=HEIGHT).run_lines(script_lines(text))
    return out.getvalue()


def check(name: str, text: str) -> None:
    path = EXPECTED / f"stepper_{name}.txt"
    if REGEN:
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs (EMU_REGEN=1 records it)"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scripted_session(name):
    mode, text = SCRIPTS[name]
    check(name, run_script(mode, text))


def test_each_fault_story_reaches_its_last_step():
    """The recorded hidden, true and tracing faults are each told whole."""
    hidden = (EXPECTED / "stepper_hidden.txt").read_text()
    assert "hidden fault · va" in hidden and "· done" in hidden
    assert "gpte[" in hidden and "spte[" in hidden and "TLB fill (itlb)" in hidden
    true = (EXPECTED / "stepper_true.txt").read_text()
    assert "true fault · va 0x007ffffc" in true and "VM entry at the guest's handler" in true
    tracing = (EXPECTED / "stepper_tracing.txt").read_text()
    assert "tracing fault · va" in tracing and "the write went through a writable spte" in tracing


def test_back_restores_the_screen_exactly():
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, height=HEIGHT, color_system=None)
    session = Session(load("demand"), Config(mode="shadow"))
    stepper = Stepper(session, console, height=HEIGHT)
    stepper.onecmd("break exit cr0_write")
    stepper.onecmd("continue")
    stepper.onecmd("next")
    stepper.onecmd("micro")
    before = (session.registers(), session.system.env.now, session.shown, session.nevents)
    out.seek(0)
    out.truncate(0)
    stepper.onecmd("show")
    screen_before = out.getvalue()
    stepper.onecmd("micro")
    stepper.onecmd("micro")
    stepper.onecmd("step 50")
    stepper.onecmd("back 3")
    assert (session.registers(), session.system.env.now, session.shown,
            session.nevents) == before
    out.seek(0)
    out.truncate(0)
    stepper.onecmd("show")
    after = out.getvalue()
    # The same screen; only the last line says what the last command did.
    assert after.split("\n> ")[0] == screen_before.split("\n> ")[0]
    assert "> back: undid micro, micro, step 50" in after


@pytest.mark.parametrize("mode", MODES)
def test_back_after_going_backwards_returns_to_the_place_before(mode):
    image = load("demand")
    session = Session(image, Config(mode=mode))
    session.add_breakpoint("addr", image.labels["page_fault"], "page_fault")
    session.cont()
    there = (session.system.cpu.icount, session.registers())
    session.step(5)
    session.reverse_step()
    assert session.system.cpu.icount == there[0] + 4
    assert session.back(1) == (f"back: undid step 5; at {there[0]:,} instructions "
                               "(breakpoint 1 at 0x000011a0 (page_fault))")
    assert (session.system.cpu.icount, session.registers()) == there
    # reverse-continue goes back to the breakpoint's hit, where 'step 5'
    # began: undoing it stays there, undoing 'continue' goes to the start
    session.step(5)
    session.reverse_continue()
    assert (session.system.cpu.icount, session.registers()) == there
    assert session.back(1).startswith(f"back: undid step 5; at {there[0]:,} instructions")
    assert (session.system.cpu.icount, session.registers()) == there
    assert session.back(1) == "back: undid continue; at the start of the run"
    assert session.system.cpu.icount == 0


@pytest.mark.parametrize("reverse", ["reverse_step", "reverse_continue", "reverse_micro"])
def test_back_after_going_backwards_never_lands_on_a_wrong_place(reverse):
    # A stop inside a VM exit is inside a step; going backwards replays from
    # a snapshot one instruction at a time, after which that place is no
    # longer the same number of steps in: 'back' forgets it (it went to
    # another place, 'replay diverged', before) and goes to one it keeps.
    session = Session(load("demand"), Config(mode="shadow"))
    session.add_breakpoint("exit", "cr0_write", "cr0_write")
    session.cont()
    session.step(5)
    getattr(session, reverse)()
    message = session.back(1)
    assert "diverged" not in message
    if message.startswith("back: undid step 5"):
        assert session.system.cpu.icount == 7802
    else:
        assert message == "back: undid continue; at the start of the run"
        assert session.system.cpu.icount == 0
    session.step(3)
    assert session.system.cpu.icount == 3 or session.system.cpu.icount == 7805


@pytest.mark.parametrize("mode", MODES)
def test_step_counts_instructions_exactly_through_faults_and_exits(mode):
    session = Session(load("demand"), Config(mode=mode))
    session.next()
    session.micro()
    session.micro()                      # from the middle of a fault, if any
    for n in (1, 7, 100, 1000, 5000):
        before = session.system.cpu.icount
        session.step(n)
        assert session.system.cpu.icount == before + n
        assert session.system.held


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_steps_and_shows_every_view(mode):
    """Whatever the mode (nested included), the commands work and say
    clearly what does not exist there."""
    out = run_script(mode, """
        next
        micro
        micro
        micro
        micro
        micro
        micro
        micro
        step 500
        tlb
        pt
        spt
        pmap
        stats
        trace
        back 3
        continue
    """)
    assert "error:" not in out
    assert "Traceback" not in out
    assert "the run is over: poweroff" in out
    if mode == "native":
        assert "no shadow table" in out and "no PMap" in out


def test_replay_is_deterministic():
    a = Session(load("demand"), Config(mode="shadow"))
    a.step(5000)
    a.micro()
    b = Session(load("demand"), Config(mode="shadow"))
    b.step(5000)
    b.micro()
    assert a.registers() == b.registers() and a.nevents == b.nevents
    assert a.system.stats() == b.system.stats()
    a.back(1)
    a.micro()
    assert a.registers() == b.registers() and a.system.stats() == b.system.stats()


# --- the command line ---------------------------------------------------------------
def emu(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "emu", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_cli_script_prints_the_same_as_the_recorded_session(tmp_path):
    script = tmp_path / "hidden.txt"
    script.write_text("\n".join(script_lines(SCRIPTS["hidden"][1])) + "\n")
    done = emu("step", "demand", "--mode", "shadow", "--script", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (EXPECTED / "stepper_hidden.txt").read_text()


def test_cli_reads_commands_from_a_pipe():
    done = emu("step", "demand", stdin="next\nmicro\nquit\n")
    assert done.returncode == 0 and done.stderr == ""
    assert "(emu) micro" in done.stdout and "VM exit" in done.stdout
    assert "\x1b[" not in done.stdout          # no colour, no cursor movement


def test_cli_missing_script_is_one_line_and_exit_1():
    done = emu("step", "demand", "--script", "no_such_script.txt")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "emu: error: cannot read script no_such_script.txt: No such file or directory"]
    assert done.stdout == ""


def test_cli_exports_svg_and_html(tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("next\nmicro\n")
    svg, html = tmp_path / "out.svg", tmp_path / "out.html"
    done = emu("step", "demand", "--script", script, "--svg", svg, "--html", html)
    assert done.returncode == 0, done.stderr
    assert svg.read_text().startswith("<svg") and "VM exit" in html.read_text()
    assert "TLB miss" in svg.read_text().replace("&#160;", " ")


def test_run_shows_no_progress_line_when_not_a_terminal():
    done = emu("run", "demand", "--quiet")
    assert "\r" not in done.stdout + done.stderr


def test_progress_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    now = [0.0]
    stream = Tty()
    line = ProgressLine(stream, clock=lambda: now[0])
    session = Session(load("demand"), Config(mode="shadow"))
    session.step(2000)
    line(session.system)
    assert stream.getvalue() == ""                 # a short run: nothing
    now[0] = 1.0
    line(session.system)
    text = stream.getvalue()
    assert text.startswith("\r\x1b[K") and "2,000 instructions" in text and "faults" in text
    line.clear()
    assert stream.getvalue().endswith("\r\x1b[K") and not line.shown


def test_a_comment_after_a_command_is_a_comment():
    # README's first session, typed as shown
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, height=HEIGHT, color_system=None)
    session = Session(load("demand"), Config(mode="shadow"))
    Stepper(session, console, height=HEIGHT).run_lines([
        "break exit cr0_write      # stop where the guest turns paging on",
        "continue", "# a line of its own", "next                      # run to the next fault"])
    text = out.getvalue()
    assert "error:" not in text and "takes one reason" not in text
    assert "> breakpoint 1 on VM exit cr0_write" in text
    assert session.breakpoints and session.system.cpu.icount > 7000


@pytest.mark.parametrize("text,value", [
    ("0x1000", 0x1000), ("_start + 4", None), ("$esp - 8", None), ("-4 + 8", 4),
    ("0xffffffff", 0xFFFFFFFF)])
def test_an_address_is_terms_joined_by_plus_and_minus(text, value):
    from emu.ui.commands import address_value
    symbols, regs = {"_start": 0x1000}, {"esp": 0x2000}
    expected = value if value is not None else {"_start + 4": 0x1004, "$esp - 8": 0x1FF8}[text]
    assert address_value(text, symbols, regs) == expected


@pytest.mark.parametrize("text,message", [
    ("0x1000 0x2000", "bad address '0x1000 0x2000': two values with no + or - between them"),
    ("0x100000000", "bad address '0x100000000': 0x100000000 is outside the 4 GiB address "
     "space"),
    ("0 - 1", "bad address '0 - 1': -0x1 is outside the 4 GiB address space"),
    ("esp +", "bad address 'esp +': it ends with an operator"),
    ("frob", "bad address 'frob': 'frob' is not a number, register or symbol")])
def test_an_address_never_sums_two_values_or_wraps_past_4_gib(text, message):
    from emu.errors import EmuError
    from emu.ui.commands import address_value
    with pytest.raises(EmuError) as info:
        address_value(text, {}, {"esp": 0x2000})
    assert str(info.value) == message


def test_delete_all_with_no_breakpoints_deletes_none():
    from emu.errors import EmuError
    from emu.ui.breakpoints import Breakpoints
    b = Breakpoints()
    assert b.delete(None) == 0
    with pytest.raises(EmuError, match="^no breakpoint 3$"):
        b.delete(3)


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_stops_a_reverse_search_where_it_began(mode, monkeypatch):
    # Ctrl-C sets the session's flag (the stepper's SIGINT handler); the
    # search sees it between instructions of its replay and gives up, and
    # the session has not moved.  The same reverse-continue afterwards
    # finds what it finds without one.
    from emu.ui import reverse
    image = load("demand")
    session = Session(image, Config(mode=mode))
    # Snapshots by batch count, not host time: the search's stretch is the
    # same on a busy machine (no snapshot after the first).
    session.recorder.every = 1 << 30
    session.add_breakpoint("addr", image.labels["page_fault"], "page_fault")
    session.cont()
    session.cont()
    here = (session.system.cpu.icount, session.registers(), session.shown)
    replayed = []
    step = reverse.Throwaway.step

    def pressed(self, limit):
        replayed.append(limit)
        if len(replayed) == 3000:
            session.interrupted = True          # Ctrl-C, a while into the search
        return step(self, limit)
    monkeypatch.setattr(reverse.Throwaway, "step", pressed)
    message = session.reverse_continue()
    assert message == (f"reverse-continue: interrupted (still where it began); at "
                       f"{here[0]:,} instructions, eip {session.system.cpu.eip:#010x}")
    assert (session.system.cpu.icount, session.registers(), session.shown) == here
    assert len(replayed) < 3000 + 2 * 1024 + 100     # it stopped soon after
    assert not session.interrupted
    monkeypatch.setattr(reverse.Throwaway, "step", step)
    assert session.reverse_continue().startswith("reverse-continue: breakpoint 1 at 0x000011a0")
    assert session.system.cpu.icount < here[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("guest", ["bad_triple", "bad_cr3_outside"])
def test_reverse_step_from_a_crash_goes_to_the_faulting_instruction(guest, mode):
    # The fault that ends the run retires nothing (and natively may take no
    # time): one step back is the machine alive at that instruction, and a
    # step forward crashes again, the same way -- not the instruction before.
    session = Session(load(guest), Config(mode=mode))
    session.cont()
    crashed = session.system
    end = (crashed.cpu.icount, crashed.cpu.eip, crashed.message)
    assert crashed.outcome == "crash"
    assert session.reverse_step() == (
        f"reverse-step: back before the fault that ended the run; at {end[0]:,} "
        f"instructions, eip {end[1]:#010x}")
    assert session.system.outcome is None
    assert (session.system.cpu.icount, session.system.cpu.eip) == end[:2]
    session.stepi()
    assert session.system.outcome == "crash"
    assert (session.system.cpu.icount, session.system.cpu.eip, session.system.message) == end
    session.reverse_step()
    assert session.reverse_step().startswith(
        f"reverse-step: back one instruction; at {end[0] - 1:,} instructions")


def _after_system_instructions(name: str, mode: str, limit: int) -> dict[int, int]:
    """The places (eip -> the instruction count where it is first reached)
    reached right after a system instruction -- one the VMM may retire
    itself (port I/O, a CR write, invlpg) -- in the first ``limit``
    instructions of a run, stepped one instruction at a time."""
    from emu import isa
    image = load(name)
    code = {a + i: b for a, seg in image.segments for i, b in enumerate(seg)}
    session = Session(image, Config(mode=mode))
    cpu = session.system.cpu
    first = {cpu.eip: 0}
    after = set()
    while not session.finished and cpu.icount < limit:
        eip = cpu.eip
        session.step(1)
        first.setdefault(cpu.eip, cpu.icount)
        if isa.decode(code.__getitem__, eip).insn.kind in (isa.SYSTEM, isa.PRIV):
            after.add(cpu.eip)
    return {eip: first[eip] for eip in sorted(after)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, limit, least", [("hello", 200, 2), ("paging", 700, 5)])
def test_continue_stops_at_a_breakpoint_after_an_instruction_the_vmm_retired(
        name, limit, least, mode):
    """Under a VMM an out, a CR write or invlpg is retired by the VMM at
    its exit; the instruction after it is a place of its own: ``continue``
    stops there, where stepping reaches it first."""
    places = _after_system_instructions(name, mode, limit)
    assert len(places) >= least
    for eip, icount in places.items():
        session = Session(load(name), Config(mode=mode))
        session.add_breakpoint("addr", eip, f"{eip:#x}")
        why = session.cont()
        cpu = session.system.cpu
        assert (cpu.eip, cpu.icount) == (eip, icount), why
        assert why.startswith("breakpoint 1"), why


@pytest.mark.parametrize("mode", MODES)
def test_a_breakpoint_on_a_handler_says_whether_its_first_instruction_ran(mode):
    """Where the hardware delivers the #PF (natively, nested paging) the
    CPU runs the handler's first instruction with the delivery; where the
    VMM injects it (shadow paging) the vCPU is held at the handler, and the
    stop says only that an event delivery entered it."""
    image = load("demand")
    handler = image.labels["vec14"]
    session = Session(image, Config(mode=mode))
    session.add_breakpoint("addr", handler, "vec14")
    why = session.cont()
    eip = session.system.cpu.eip
    assert why.startswith(f"breakpoint 1 at {handler:#010x} (vec14) (entered by an event delivery")
    if mode == "shadow":
        assert eip == handler and why.endswith("(entered by an event delivery)")
    else:
        assert eip != handler and why.endswith("the CPU ran the handler's first instruction "
                                               "with it)")
