"""``emu lab``: the built-in VMM passes every level through the student API;
each mutant VMM fails with the step it broke; the skeleton says where to
start; the worked level-1 solution passes; bad VMM files and bad usage are
one line; the lab's guests give their exact output in every mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emu import Config, run
from emu.lab import referee
from emu.lab.checker import check, image_of, run_test
from emu.lab.command import gradescope, to_json
from emu.lab.levels import LEVELS, Case, level
from emu.lab.loader import StudentError, load_vmm
from emu.lab.skeleton import handout, skeleton
from emu.vmm.builtin import BuiltinShadowVmm

ROOT = Path(__file__).parent.parent
MUTANTS = Path(__file__).parent / "lab_mutants"


def emu(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "emu", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


# --- the built-in VMM passes every level ----------------------------------------------------

# One test of each level here (the whole of every level: `emu lab check builtin`).
BUILTIN_TESTS = [(1, "lab_touch"), (1, "bigpages"), (2, "lab_true"), (2, "bad_triple"),
                 (3, "lab_dirty"), (4, "lab_ptwrite"), (4, "demand"), (5, "multiproc"),
                 (6, "lab_inval"), (6, "forkwait"), (7, "lab_swap x2"), (2, "gen-2-0"),
                 (3, "gen-3-1"), (4, "gen-4-2"), (6, "gen-6-0")]


@pytest.mark.parametrize("n,name", BUILTIN_TESTS)
def test_the_builtin_vmm_passes_through_the_student_api(n, name):
    lv = level(n)
    test = next(t for t in lv.tests if t.name == name)
    result = run_test(BuiltinShadowVmm, lv, test, None)
    assert result.passed, result.finding


def test_every_level_has_tests_and_every_guest_exists():
    assert [lv.number for lv in LEVELS] == [1, 2, 3, 4, 5, 6, 7]
    for lv in LEVELS:
        assert lv.tests
        for t in lv.tests:
            assert image_of(t.guest).entry == 0x1000     # a bundled, lab or generated kernel


# --- mutants: each fails with the step it broke ------------------------------------------------

MUTANT_CASES = [
    ("wrong_error_code", 2, "lab_true", "step 3: you injected #PF at va 0x00300123 with error "
     "code 0x0 (not present, read, kernel), but the guest's walk of va 0x00300123 gives error "
     "code 0x4 (not present, read, user)"),
    ("hidden_as_true", 2, "lab_true", "step 3: you injected a true fault at va 0x00800010 "
     "(read, user), but the guest's gpte 0x00303007 allows it: a hidden fault"),
    ("no_accessed", 1, "lab_touch", "step 2: after the fault at va 0x00001240 the guest's pde "
     "at pa 0x00100000 is 0x00101007, A clear: walk the guest's table with hw.guest.walk(...), "
     "which sets A (and D on a write) as the hardware would"),
    ("no_accessed_pde", 1, "lab_touch", "step 2: after the fault at va 0x00001240 the guest's "
     "pde at pa 0x00100000 is 0x00101007, A clear: walk the guest's table with "
     "hw.guest.walk(...), which sets A (and D on a write) as the hardware would"),
    ("says_inject", 1, "lab_touch", "step 5: you returned PfResult.INJECT for the fault at va "
     "0x00001000 but injected nothing (hw.guest.inject_page_fault)"),
    ("wrong_result", 2, "lab_true", "step 5: you injected #PF at va 0x00300123 but returned "
     "PfResult.RETRY: the guest's handler runs next -- return PfResult.INJECT"),
    ("wrong_result", 4, "lab_ptwrite", "step 5: you let the instruction at va 0x00102000 "
     "through (hw.emulate_once) but returned PfResult.RETRY: it would run again -- return "
     "PfResult.EMULATE"),
    ("spde_rights", 1, "lab_touch", "step 4: the spde 0x0000c007 for va 0x40000000 lets user "
     "code reach pages whose gpde 0x00102023 is supervisor-only (link with the gpde's U/S and "
     "R/W)"),
    ("spde_rights", 2, "lab_true", "step 4: the spde 0x0000b007 for va 0x00800000 grants write "
     "where the gpde 0x00102025 is read-only (link with the gpde's U/S and R/W)"),
    ("no_dirty", 3, "lab_dirty", "step 4: spte 0x00002003 grants write to a page whose gpte "
     "0x00001023 is clean (D=0): the guest will never see D set"),
    ("no_fill", 1, "lab_touch", "step 4: you returned RETRY, but the shadow still refuses the "
     "access at va 0x40000000 (write, kernel; the hardware's walk: error code 0x2 (not present, "
     "write, kernel)): the instruction will fault again"),
    ("no_zap", 4, "lab_ptwrite", "step 3 (guest page-table write): the spte 0x00005021 (entry "
     "0x0 of the shadow of table 0x102) maps mpn 0x5, but the guest's gpte 0x00301003 names "
     "ppn 0x301, which is in mpn 0x6 (seen after the #PF at va 0x00102000): when the guest "
     "writes its page table, drop or update the shadow entries made from what it wrote"),
    ("stale_root", 5, "multiproc", "CR3 load: the guest's CR3 is 0x00202000, but the hardware "
     "walks the shadow of directory 0x00200000: switch to the shadow of the guest's directory "
     "(hw.shadow.ensure(('pd', 0x202)), hw.tlb.load_root)"),
    ("other_page", 1, "lab_touch", "isolation: spte maps mpn 0x3, which is a page of the VMM's "
     "own tables"),
    ("other_vm", 7, "lab_swap x2", "isolation: spte maps mpn 0x2, which is a page the PMap "
     "gives to vm1"),
    ("no_detach", 7, "lab_swap x2", "reclaim: after referenced(ppn 0x1, mpn 0x2) the TLB "
     "still caches va 0x00001000 -> mpn 0x2: the guest's next use of the page hits it and "
     "sets no A bit, so it will look unused (hw.tlb.forget_page(mpn) once its A bits are "
     "cleared)"),
    ("always_used", 7, "lab_swap x2", "reclaim: referenced(ppn 0x1, mpn 0x2) said the page "
     "was used, but no spte that maps it had A set: test and clear the A bits of every spte "
     "that maps mpn (hw.shadow.sptes_mapping, hw.shadow.test_and_clear_accessed)"),
    ("raises", 1, "lab_touch", "handle_page_fault: your VMM raised KeyError: 4672 at "
     "{path}:9 in handle_page_fault (the #PF exit at va 0x00001240, fetch, kernel)"),
    # sys.exit() in a handler is the VMM's error, not the grader's end
    ("exits", 1, "lab_touch", "handle_page_fault: your VMM raised SystemExit: sys.exit(0) at "
     "{path}:10 in handle_page_fault (the #PF exit at va 0x00001240, fetch, kernel)"),
    ("os_exits", 1, "lab_touch", "handle_page_fault: your VMM raised SystemExit: os._exit(0) "
     "at {path}:11 in handle_page_fault (the #PF exit at va 0x00001240, fetch, kernel)"),
    # ... and a KeyboardInterrupt it raises, which no Ctrl-C sent
    ("interrupts", 1, "lab_touch", "handle_page_fault: your VMM raised KeyboardInterrupt at "
     "{path}:8 in handle_page_fault (the #PF exit at va 0x00001240, fetch, kernel)"),
]


@pytest.mark.parametrize("mutant,n,guest,message", MUTANT_CASES,
                         ids=[c[0] for c in MUTANT_CASES])
def test_a_mutant_fails_with_the_step_it_broke(mutant, n, guest, message):
    path = str(MUTANTS / f"{mutant}.py")
    cls = load_vmm(path)
    lv = level(n)
    result = run_test(cls, lv, next(t for t in lv.tests if t.name == guest), path)
    assert not result.passed
    assert str(result.finding) == message.format(path=path)


def test_each_mutant_passes_the_levels_before_the_one_it_breaks():
    # The checker blames the right level: no false alarm earlier.
    for mutant, n in (("no_dirty", 3), ("no_zap", 4)):
        cls = load_vmm(str(MUTANTS / f"{mutant}.py"))
        lv = level(n - 1)
        assert run_test(cls, lv, lv.tests[0], None).passed


def test_an_endless_handler_is_stopped_and_named(monkeypatch):
    monkeypatch.setattr(referee, "HANDLER_LIMIT", 0.3)
    path = str(MUTANTS / "endless.py")
    lv = level(4)
    result = run_test(load_vmm(path), lv, lv.tests[0], path)
    assert result.finding.step == "handle_invlpg"
    assert result.finding.message.startswith(
        f"your VMM ran for too long (it was at {path}:")
    assert result.finding.message.endswith(
        "in handle_invlpg): an endless loop? the VMM's handler ran for more than 0.3 s "
        "(the guest's INVLPG of va 0x40000000)")


def test_an_endless_handler_that_catches_exception_is_stopped_too(monkeypatch):
    monkeypatch.setattr(referee, "HANDLER_LIMIT", 0.3)
    path = str(MUTANTS / "swallows.py")
    lv = level(4)
    result = run_test(load_vmm(path), lv, lv.tests[0], path)
    assert result.finding.step == "handle_invlpg"
    assert result.finding.message.endswith(
        "in handle_invlpg): an endless loop? the VMM's handler ran for more than 0.3 s "
        "(the guest's INVLPG of va 0x40000000)")


BARE = """
from emu.vmm.builtin import BuiltinShadowVmm


class Bare(BuiltinShadowVmm):
    def handle_page_fault(self, exit):
        while True:
            try:
                while True:
                    pass
            except BaseException:  # catches every attempt to stop it
                pass
"""


def test_a_handler_that_catches_every_stop_ends_the_process_in_one_line(tmp_path):
    (tmp_path / "bare.py").write_text(BARE)
    r = subprocess.run([sys.executable, "-c", "from emu.lab import referee; "
                        "referee.HANDLER_LIMIT = 0.2; from emu.cli import main; "
                        "raise SystemExit(main(['lab', 'check', 'bare.py', '--level', '1']))"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "emu: error: your VMM ran past its time limit and caught every attempt to stop it "
        "(a bare 'except:' in a loop?): stopped")


# --- the skeleton and the worked solution ------------------------------------------------------

def test_the_skeleton_unchanged_fails_level_1_and_says_where_to_start(tmp_path):
    r = emu("lab", "new", "1", str(tmp_path / "mine"))
    assert r.returncode == 0, r.stderr
    vmm = tmp_path / "mine" / "vmm.py"
    assert (tmp_path / "mine" / "HANDOUT.md").read_text().startswith(
        "# emu lab, level 1: hidden faults")
    lv = level(1)
    result = run_test(load_vmm(str(vmm)), lv, lv.tests[0], str(vmm))
    assert str(result.finding) == (
        "handle_page_fault: your VMM raised NotImplementedError: start here: step 2 of "
        f"handle_page_fault (walk the guest's table) at {vmm}:33 in handle_page_fault "
        "(the #PF exit at va 0x00001000, fetch, kernel)")


@pytest.mark.parametrize("n", range(1, 8))
def test_every_skeleton_is_python_and_every_handout_names_its_guests(n):
    compile(skeleton(n), "vmm.py", "exec")
    text = handout(n)
    for t in level(n).tests:
        assert f"`{t.name}`" in text


def test_the_worked_level_1_solution_passes_level_1_and_not_level_3():
    cls = load_vmm(str(ROOT / "examples" / "lab" / "level1.py"))
    [result] = check(cls, [1])
    assert result.ok, [str(t.finding) for t in result.tests if not t.passed]
    lv = level(3)
    assert not run_test(cls, lv, lv.tests[0], None).passed


# --- loading a VMM file: one line for each mistake ------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("class A(:\n", "{p}:1: syntax error: invalid syntax"),
    ("x = 1\n", "{p}: defines no VMM: write a class that subclasses emu.vmm.api.ShadowVmm "
     "(emu lab new 1 gives a skeleton)"),
    ("from emu.vmm.api import ShadowVmm\nclass A(ShadowVmm): pass\nclass B(ShadowVmm): pass\n",
     "{p}: defines 2 VMM classes (A, B): keep one"),
    ("import no_such_module_here\n", "your VMM raised ModuleNotFoundError: No module named "
     "'no_such_module_here' at {p}:1 in <module> while importing it"),
    # (no Ctrl-C came: the module's own error, not the end of the command)
    ("raise KeyboardInterrupt\n", "your VMM raised KeyboardInterrupt at {p}:1 in <module> "
     "while importing it"),
])
def test_a_bad_vmm_file_is_one_line(tmp_path, text, message):
    p = tmp_path / "vmm.py"
    p.write_text(text)
    with pytest.raises(StudentError) as e:
        load_vmm(str(p))
    assert str(e.value) == message.format(p=p)


def test_the_command_line(tmp_path):
    r = emu("lab", "check", str(tmp_path / "none.py"))
    assert (r.returncode, r.stderr) == (1, f"emu: error: {tmp_path / 'none.py'}: no such file\n")
    r = emu("lab", "new", "9")
    assert r.returncode == 2
    assert r.stderr == "emu: error: no level 9: the levels are 1 to 7 (emu lab list)\n"
    assert emu("lab", "new", "2", str(tmp_path)).returncode == 0
    r = emu("lab", "new", "2", str(tmp_path))
    assert r.returncode == 1 and "not overwritten" in r.stderr
    r = emu("lab", "list")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "1  hidden faults"
    r = emu("run", "lab_touch", "--vmm", str(tmp_path / "vmm.py"))
    assert r.returncode == 1
    assert r.stderr.startswith("emu: error: your VMM raised NotImplementedError: start here")
    assert len(r.stderr.splitlines()) == 1
    r = emu("run", "lab_touch", "--vmm", str(tmp_path / "vmm.py"), "--mode", "nested")
    assert r.returncode == 2 and "--vmm is a shadow-paging VMM" in r.stderr


def test_check_writes_json_and_gradescope(tmp_path):
    r = emu("lab", "check", str(MUTANTS / "raises.py"), "--level", "1", "--only", "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["max_score"] == len(level(1).tests)
    assert doc["score"] == 2          # hello and syscalls never turn paging on
    assert doc["levels"][0]["tests"][0]["step"] == "handle_page_fault"
    out = tmp_path / "results.json"
    r = emu("lab", "check", str(MUTANTS / "raises.py"), "--level", "1", "--only",
            "--gradescope", str(out))
    assert (r.returncode, r.stdout) == (1, f"wrote {out}: score: 2/5 tests; 0 of 1 levels "
                                           "passed\n")
    g = json.loads(out.read_text())
    assert (g["score"], g["max_score"]) == (2, len(level(1).tests))
    assert {t["max_score"] for t in g["tests"]} == {1}
    assert g["tests"][1] == {"name": "level 1 (hidden faults): hello", "score": 1,
                             "max_score": 1, "output": "passed", "visibility": "visible"}


def test_the_json_shapes_are_stable():
    lv = level(1)
    res = check(load_vmm(str(MUTANTS / "other_page.py")), [1])
    assert to_json("x.py", res)["levels"][0]["tests"][0] == {
        "level": 1, "test": "lab_touch", "passed": False, "seconds":
            res[0].tests[0].to_json()["seconds"],
        "step": "isolation", "message": "spte maps mpn 0x3, which is a page of the VMM's own "
        "tables"}
    assert gradescope(res)["max_score"] == len(lv.tests)


# --- the lab's guests: exact output, every mode ------------------------------------------------

GUEST_OUTPUT = {
    "lab_dirty": (0, ["lab_dirty: A and D bits after reads and writes",
                      "page 0: A|D = 0x00000020", "page 1: A|D = 0x00000060",
                      "page 2: A|D = 0x00000060", "page 3: A|D = 0x00000000",
                      "page 4: A|D = 0x00000020", "page 5: A|D = 0x00000060", "0x00000011"]),
    "lab_inval": (0, ["lab_inval: stale translations made fresh",
                      "#PF cr2=0x40000000 err=0x00000003"] + ["0x0000bbbb"] * 5),
    "lab_ptwrite": (2, ["lab_ptwrite: page-table writes while paging is on", "0x0000aaaa",
                        "0x0000bbbb", "#PF, error code 0x00000000", "0x0000cccc",
                        "#PF, error code 0x00000003", "0x00001234", "0x0000aaaa",
                        "0x00001078", "0x00001178"]),
    "lab_swap": (0, ["lab_swap: pages that lost their data: 0"]),
    "lab_touch": (0, ["lab_touch: 32 pages, two mappings, hidden faults only",
                      "sum through the data mapping:  0x00000db0",
                      "sum through the alias mapping: 0x00000db0"]),
    "lab_true": (10, ["lab_true: every error code", "#PF cr2=0x00300123 err=0x00000004",
                      "#PF cr2=0x00300456 err=0x00000006", "#PF cr2=0x00301010 err=0x00000005",
                      "#PF cr2=0x00302000 err=0x00000007", "#PF cr2=0x00301000 err=0x00000007",
                      "#PF cr2=0x00300040 err=0x00000004", "#PF cr2=0x00800010 err=0x00000007",
                      "no fault", "#PF cr2=0x00302008 err=0x00000003",
                      "#PF cr2=0x00300010 err=0x00000000", "#PF cr2=0x00300020 err=0x00000002",
                      "done: 0x00000005"]),
}


@pytest.mark.parametrize("mode,policy", [("native", "trace-cache"), ("shadow", "trace-cache"),
                                         ("shadow", "oos-drop"), ("nested", "trace-cache")])
@pytest.mark.parametrize("guest", sorted(GUEST_OUTPUT))
def test_the_lab_guests_print_the_same_in_every_mode(guest, mode, policy):
    status, lines = GUEST_OUTPUT[guest]
    r = run(image_of(guest), Config(mode=mode, shadow_policy=policy))
    assert (r.outcome, r.exit_status, r.console.splitlines()) == ("poweroff", status, lines)


def test_lab_swap_loses_nothing_on_a_machine_too_small():
    r = run(image_of("lab_swap"), Config(mode="shadow", machine_mib=1, check_invariants=True))
    assert r.console == "lab_swap: pages that lost their data: 0\n"
    assert r.stats["host"]["swap_outs"] > 0


@pytest.mark.parametrize("level", [4, 6])
def test_generated_kernels_agree_in_every_mode_and_policy(level):
    # gen.py keeps to what x86 defines: native is the answer for every seed
    # (levels 4 and 6 have every feature: rights, rewrites, A/D printed).
    for seed in (3,):
        img = image_of(f"gen-{level}-{seed}")
        runs = {(m, p): run(img, Config(mode=m, shadow_policy=p))
                for m, p in [("native", "trace-cache"), ("native", "trace-cache"),
                             ("shadow", "trace-drop"), ("shadow", "oos-cache"),
                             ("nested", "trace-cache")]}
        seen = {(r.outcome, r.exit_status, r.console) for r in runs.values()}
        assert len(seen) == 1
        [(outcome, status, console)] = seen
        assert (outcome, status) == ("poweroff", 0) and console.count("#PF") >= 3


def test_generated_kernels_catch_a_missing_zap():
    cls = load_vmm(str(MUTANTS / "no_zap.py"))
    lv = level(4)
    failed = [run_test(cls, lv, Case(f"gen-4-{seed}"), None) for seed in range(3)]
    assert any(not r.passed and r.finding.step == "step 3 (guest page-table write)"
               for r in failed)


def test_a_test_names_its_copies():
    assert Case("lab_swap", vms=2).name == "lab_swap x2"


@pytest.mark.parametrize("vmm,to", [("builtin", "process"), ("file", "process"),
                                    ("file", "group")])
def test_a_ctrl_c_still_stops_the_grading(vmm, to, tmp_path):
    # A student's file is graded under a watcher process (vmm/handler_time.py):
    # a SIGINT sent to it, or to the whole group, stops the grading once.
    import signal
    import time
    if vmm == "file":
        vmm = str(tmp_path / "vmm.py")
        (tmp_path / "vmm.py").write_text(
            "from emu.vmm import builtin\n\n\n"
            "class Mine(builtin.BuiltinShadowVmm):\n    name = 'mine'\n")
    p = subprocess.Popen([sys.executable, "-m", "emu", "lab", "check", vmm],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        time.sleep(3)                   # (it is grading: 34 tests take seconds)
        if to == "group":
            os.killpg(p.pid, signal.SIGINT)
        else:
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert (p.returncode, err) == (130, "emu: interrupted\n")


def test_a_keyboardinterrupt_is_the_students_where_sigint_is_ignored():
    # A grader started in the background (a script's `emu lab check ... &`,
    # nohup) ignores SIGINT: no Ctrl-C can come, so the KeyboardInterrupt
    # a VMM raises is its own error, graded -- not the end of the grading.
    import signal
    path = str(MUTANTS / "interrupts.py")
    p = subprocess.run([sys.executable, "-m", "emu", "lab", "check", path, "--level", "1",
                        "--only"], capture_output=True, text=True, timeout=300,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert (p.returncode, p.stderr) == (1, "")
    assert (f"  lab_touch: handle_page_fault: your VMM raised KeyboardInterrupt at {path}:8 "
            "in handle_page_fault (the #PF exit at va 0x00001240, fetch, kernel)\n") in p.stdout


def test_a_run_that_crashes_says_how_it_ended(tmp_path):
    # The worked solution with the guest's frame ignored (ppn from va): the
    # guest's console stops, and the finding says why -- the crash.
    text = (ROOT / "examples" / "lab" / "level1.py").read_text()
    wrong = tmp_path / "vmm.py"
    wrong.write_text(text.replace("ppn = walk.frame >> 12", "ppn = va >> 12"))
    lv = level(1)
    result = run_test(load_vmm(str(wrong)), lv, lv.tests[0], str(wrong))
    assert str(result.finding) == (
        "output: the guest's console stops before line 2 ('sum through the data mapping:  "
        "0x00000db0'); the run ended: crash, pa 0x40000000 is outside memory (16 MiB) "
        "(eip 0x000010a6)")


def test_a_vmm_that_exits_or_raises_is_its_own_error_on_every_command(tmp_path):
    exits, raises = str(MUTANTS / "exits.py"), str(MUTANTS / "raises.py")
    line = f"emu: error: your VMM raised SystemExit: sys.exit(0) at {exits}:10 in " \
           "handle_page_fault\n"
    r = emu("run", "lab_touch", "--vmm", exits, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (1, line)
    r = emu("lab", "check", exits, "--level", "1", cwd=tmp_path)
    assert r.returncode == 1
    assert "your VMM raised SystemExit: sys.exit(0)" in r.stdout
    # several VMs on one machine (simpy raises the handler's exception anew)
    r = emu("run", "lab_touch", "lab_touch", "--vmm", raises, "--quiet", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (
        1, f"emu: error: your VMM raised KeyError: 4672 at {raises}:9 in handle_page_fault\n")
    # the stepper says whose error it is, and goes on
    script = tmp_path / "s.txt"
    script.write_text("continue\nquit\n")
    r = emu("step", "lab_touch", "--vmm", raises, "--script", str(script), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    shown = " ".join(r.stdout.split())            # (the console wraps long lines)
    assert f"error: your VMM raised KeyError: 4672 at {raises}:9 in handle_page_fault" in shown
    assert "internal error" not in shown
    # sys.exit() outside a handler: when the VMM is made
    init = tmp_path / "init.py"
    init.write_text("import sys\nfrom emu.vmm.builtin import BuiltinShadowVmm\n\n\n"
                    "class Quits(BuiltinShadowVmm):\n    def __init__(self, hw, policy):\n"
                    "        sys.exit(3)\n")
    r = emu("run", "lab_touch", "--vmm", "init.py", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (
        1, "emu: error: your VMM raised SystemExit: sys.exit(3) at init.py:7 in __init__\n")


def test_check_many_keeps_each_submission_to_itself(tmp_path):
    folder = tmp_path / "class"
    folder.mkdir()
    raises = (MUTANTS / "raises.py").read_text()
    # patches the checker (every later test would pass), prints, deletes files
    (folder / "a_monkey.py").write_text("import emu.lab.checker as c\n"
                                        "c._run = lambda *a, **k: None\n" + raises)
    (folder / "b_printer.py").write_text(raises.replace(
        "        if self.hw.guest.paging:", "        print('x' * 100)\n"
        "        if self.hw.guest.paging:"))
    (folder / "c_deleter.py").write_text("import os\nfor f in os.listdir('.'):\n"
                                         "    os.remove(f)\n" + raises)
    (folder / "d_raises.py").write_text(raises)
    # ... or the code of one of its functions, in place
    (folder / "e_recoder.py").write_text("import emu.lab.checker as c\n"
                                         "c._run.__code__ = (lambda *a, **k: None).__code__\n"
                                         + raises)
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("kept")
    r = emu("lab", "check", "--many", str(folder), "--level", "1", "--only", "--jobs", "1",
            cwd=work)
    assert r.returncode == 0, r.stderr
    rows = [line.split(None, 3) for line in r.stdout.splitlines()[1:] if line.strip()]
    assert [row[:3] for row in rows] == [
        ["a_monkey.py", "-", "0"], ["b_printer.py", "2/5", "0"], ["c_deleter.py", "2/5", "0"],
        ["d_raises.py", "2/5", "0"], ["e_recoder.py", "-", "0"]]
    assert rows[0][3] == ("your VMM changed emu's own code (emu.lab.checker._run): "
                          "not graded")
    assert rows[4][3] == ("your VMM changed emu's own code (emu.lab.checker._run.__code__): "
                          "not graded")
    assert rows[3][3].startswith("level 1 lab_touch: handle_page_fault: your VMM raised "
                                 f"KeyError: 4672 at {folder / 'd_raises.py'}:9")
    assert "xxxx" not in r.stdout
    assert (work / "keep.txt").read_text() == "kept"


def test_a_single_check_refuses_a_vmm_that_changed_the_checker(tmp_path):
    # The Gradescope path grades one file per run: a file that patches the
    # checker (every test "passes") gets no score there either.
    cheat = tmp_path / "vmm.py"
    cheat.write_text("import emu.lab.checker as c\nc._run = lambda *a, **k: None\n"
                     + (MUTANTS / "raises.py").read_text())
    why = "your VMM changed emu's own code (emu.lab.checker._run): not graded"
    r = emu("lab", "check", str(cheat), "--level", "1")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", f"emu: error: {why}\n")
    out = tmp_path / "results.json"
    r = emu("lab", "check", str(cheat), "--level", "1", "--gradescope", str(out))
    assert r.returncode == 1
    assert json.loads(out.read_text()) == {"score": 0, "max_score": 5, "output": why,
                                           "visibility": "visible", "tests": []}


def test_check_many_grades_a_folder_through_the_sweep_engine(tmp_path):
    folder = tmp_path / "class"
    (folder / "carol").mkdir(parents=True)
    (folder / "alice.py").write_text((MUTANTS / "other_page.py").read_text())
    (folder / "carol" / "vmm.py").write_text((MUTANTS / "raises.py").read_text())
    (folder / "dave.py").write_text("class (:\n")
    out = tmp_path / "grades.csv"
    r = emu("lab", "check", "--many", str(folder), "--level", "1", "--only", "--jobs", "2",
            "--out", str(out))
    assert r.returncode == 0, r.stderr
    import csv
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["submission", "score", "max_score", "levels_passed", "first_failure"]
    assert rows[1] == [f"{folder}/alice.py", "2", "5", "0", "level 1 lab_touch: isolation: "
                       "spte maps mpn 0x3, which is a page of the VMM's own tables"]
    assert rows[2][:4] == [f"{folder}/carol/vmm.py", "2", "5", "0"]
    assert rows[2][4].startswith("level 1 lab_touch: handle_page_fault: your VMM raised "
                                 "KeyError: 4672 at ")
    assert rows[3] == [f"{folder}/dave.py", "0", "", "0",
                       f"cannot load: {folder}/dave.py:1: syntax error: invalid syntax"]
    assert r.stdout.splitlines()[0].split() == ["submission", "score", "levels", "first",
                                                "failure"]
    r = emu("lab", "check", "--many", str(tmp_path / "nowhere"))
    assert (r.returncode, r.stderr) == (1, f"emu: error: {tmp_path / 'nowhere'}: not a folder "
                                           "of submissions\n")


def test_check_many_without_the_sweep_extra_says_how_to_get_it(tmp_path, capsys,
                                                                monkeypatch):
    import importlib.util

    from emu.cli import main
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("dask", "distributed")
                        else real(name, *a))
    (tmp_path / "a.py").write_text((MUTANTS / "raises.py").read_text())
    assert main(["lab", "check", "--many", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("emu: error: emu lab check --many needs dask, "
                                       "distributed: pip install 'shadowpaging-emu[sweep]'\n")


def test_many_names_a_folder_called_like_a_file_and_refuses_a_bad_out_at_once(tmp_path):
    (tmp_path / "class" / "dir.py").mkdir(parents=True)
    (tmp_path / "class" / "junk.py").write_bytes(b"\x00\xff not python")
    r = emu("lab", "check", "--many", str(tmp_path / "class"), "--level", "1",
            "--out", str(tmp_path / "grades.txt"))
    assert (r.returncode, r.stdout) == (2, "")          # before any grading
    assert r.stderr.strip() == f"emu: error: {tmp_path / 'grades.txt'}: --out writes .csv or .json"
    r = emu("lab", "check", "--many", str(tmp_path / "class"), "--level", "1", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert rows[1] == "dir.py   -            0  cannot load: a folder, not a Python file"
    assert rows[2].startswith("junk.py  -            0  cannot load: ")
