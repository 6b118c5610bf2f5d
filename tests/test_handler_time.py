"""The time limit on a student's VMM when one call never returns to Python
(``emu/vmm/handler_time.py``): the watcher process stops it with one line
and exit status 1, and is otherwise invisible -- the child's status and
output pass through, a signal sent to the watcher reaches the child, and a
killed watcher takes the child with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

C_LOOP_VMM = """\
from emu.vmm.api import ShadowVmm


class StuckInC(ShadowVmm):
    name = "a handler in one endless call into C"

    def handle_page_fault(self, exit):
        return sum(range(10 ** 13))      # never checks for signals
"""


def _python(script: str, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _communicate(p) -> tuple[str, str]:
    try:
        return p.communicate(timeout=60)
    finally:
        p.kill()                # (a watcher that failed: nothing left spinning)


def _watched(body: str, grace: float = 0.3) -> str:
    return ("import os, sys, time\n"
            "from emu.vmm import handler_time as h\n"
            f"h.GRACE = {grace}\n"
            "h.supervise()\n" + body)


def test_a_handler_stuck_in_c_is_stopped_with_one_line(tmp_path):
    vmm = tmp_path / "vmm.py"
    vmm.write_text(C_LOOP_VMM)
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "emu", "run", "lab_touch", "--vmm", str(vmm)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    took = time.monotonic() - t0
    assert (done.returncode, done.stderr) == (1, (
        "emu: error: your VMM ran for more than 5 s in one call that Python cannot "
        "interrupt (a long computation in C?): stopped\n"))
    assert 5 < took < 60


def test_the_watcher_stops_a_call_into_c_past_the_limit():
    p = _python(_watched("print('before', flush=True)\n"
                         "h.start(0.2, 'x')\n"
                         "sum(range(10 ** 13))\n"))
    out, err = _communicate(p)
    assert (p.returncode, out, err) == (1, "before\n", (
        "emu: error: your VMM ran for more than 0.2 s in one call that Python cannot "
        "interrupt (a long computation in C?): stopped\n"))


def test_a_call_into_c_is_stopped_soon_after_the_limit_not_after_the_grace():
    """No alarm handled since the limit: Python has not run since, so the
    watcher need not wait the ``GRACE`` a handler that swallows alarms gets
    (here 30 s): it stops the call ``STUCK`` s after the limit."""
    t0 = time.monotonic()
    p = _python(_watched("h.start(0.2, 'x')\n"
                         "sum(range(10 ** 13))\n", grace=30))
    out, err = _communicate(p)
    took = time.monotonic() - t0
    assert (p.returncode, err) == (1, (
        "emu: error: your VMM ran for more than 0.2 s in one call that Python cannot "
        "interrupt (a long computation in C?): stopped\n"))
    assert 0.2 + 1.0 <= took < 20


def test_a_handler_that_swallows_the_alarms_is_left_to_the_in_process_layer():
    """Alarms handled (and swallowed by a bare ``except:``): Python runs, so
    the watcher does not stop it early; the in-process layer ends it after
    ``ALARM_GIVE_UP`` alarms, with its own line."""
    p = _python(_watched("h.ALARM_REPEAT = 0.05\n"
                         "h.start(0.2, 'x')\n"
                         "while True:\n"
                         "    try:\n"
                         "        time.sleep(1)\n"
                         "    except BaseException:\n"
                         "        pass\n", grace=30))
    out, err = _communicate(p)
    assert (p.returncode, err) == (1, (
        "emu: error: your VMM ran past its time limit and caught every attempt to stop it "
        "(a bare 'except:' in a loop?): stopped\n"))


def test_time_outside_a_handler_is_not_counted():
    p = _python(_watched("h.start(0.2, 'x')\n"
                         "h.stop()\n"
                         "time.sleep(1.5)\n"             # past 0.2 + 0.3, stopped
                         "h.start(0.2, 'x')\n"
                         "h.stop()\n"
                         "print('done')\n"))
    out, err = _communicate(p)
    assert (p.returncode, out, err) == (0, "done\n", "")


def test_the_childs_status_and_output_pass_through():
    p = _python(_watched("print('out')\n"
                         "print('err', file=sys.stderr)\n"
                         "sys.exit(3)\n"))
    out, err = _communicate(p)
    assert (p.returncode, out, err) == (3, "out\n", "err\n")


def test_a_signal_sent_to_the_watcher_reaches_the_child():
    p = _python(_watched("try:\n"
                         "    print('ready', flush=True)\n"
                         "    time.sleep(60)\n"
                         "except KeyboardInterrupt:\n"
                         "    print('interrupted')\n"
                         "    sys.exit(130)\n"))
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGINT)
    out, err = _communicate(p)
    assert (p.returncode, out, err) == (130, "interrupted\n", "")

    p = _python(_watched("print('ready', flush=True)\n"
                         "time.sleep(60)\n"))
    assert p.stdout.readline() == "ready\n"
    p.terminate()
    _communicate(p)
    assert p.returncode == -signal.SIGTERM      # the child's death, passed on


def test_a_sigint_to_the_whole_group_reaches_the_child_once():
    # killpg, as a harness or a terminal sends it: the child got it already,
    # and the watcher does not send it again.
    p = _python(_watched("n = []\n"
                         "import signal\n"
                         "signal.signal(signal.SIGINT, lambda *a: n.append(1))\n"
                         "print('ready', flush=True)\n"
                         "t = time.monotonic() + 1.5\n"
                         "while time.monotonic() < t:\n"
                         "    time.sleep(0.05)\n"
                         "print(len(n))\n"), start_new_session=True)
    assert p.stdout.readline() == "ready\n"
    os.killpg(p.pid, signal.SIGINT)
    out, err = _communicate(p)
    assert (p.returncode, out, err) == (0, "1\n", "")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line for line in f)
    except FileNotFoundError:
        return False


def test_a_killed_watcher_takes_the_child_with_it():
    if not os.path.exists("/proc/self/status"):
        return                  # (Linux: the parent-death signal)
    p = _python(_watched("print(os.getpid(), flush=True)\n"
                         "time.sleep(60)\n"))
    child = int(p.stdout.readline())
    assert child != p.pid and _alive(child)
    p.kill()
    _communicate(p)
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
