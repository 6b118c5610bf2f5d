"""The host-time limit on a student's VMM code, and what ends it.

A student's handler (or the import of their file) may loop.  Two layers
stop it, each with one line and exit status 1, never a hang:

* In the process (``start`` / ``stop``): SIGALRM after the limit raises
  ``HandlerAlarm`` in the handler -- a ``BaseException``, so ``except
  Exception`` cannot swallow it -- and again every ``ALARM_REPEAT`` s (a
  bare ``except:`` swallows one).  When ``ALARM_GIVE_UP`` of them have been
  swallowed, the process ends.
* Outside it (``supervise``): a Python signal handler runs only between
  bytecodes, so a handler stuck in one long call into C --
  ``sum(range(10**12))``, a regular expression's backtracking, a power of
  a million digits -- never sees the alarm.  When emu runs as a program
  over a student's code, the process the user started forks before any
  work and watches: the work goes on in the child, which writes each
  handler's deadline into a page they share, and each time the alarm's
  Python handler runs.  Past the limit by ``STUCK`` s with no alarm
  handled -- Python has not run one bytecode since the limit -- or by
  ``GRACE`` s whatever happened (after the in-process layer would have
  acted), the watcher stops the child.
  The watcher passes the child's exit status on, and a signal sent to it
  (``kill``) on to the child.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import struct
import sys
import time


class HandlerTimeout(Exception):
    """A VMM handler ran longer than the monitor's time limit."""


class HandlerExited(Exception):
    """A handler raised ``SystemExit`` (``sys.exit()`` in a VMM): an error of
    the VMM's like any other, not the end of the program that runs it (a
    grader checking a class's VMMs, a sweep).  Its traceback is the
    handler's."""

    shown_as = "SystemExit"


class OsExit(SystemExit):
    """``os._exit(status)`` called by a student's VMM (``lab/loader.py``
    turns it into this): reported as its own call, like ``sys.exit``."""

    def call(self) -> str:
        return f"os._exit({self.code!r})"


class HandlerAlarm(BaseException):
    """The time limit's signal inside a handler: a ``BaseException``, so a
    student's ``except Exception`` around a loop cannot swallow it, and
    raised again every ``ALARM_REPEAT`` s until the handler gives up (a bare
    ``except:`` swallows one).  Raised out of the handler as
    ``HandlerTimeout``."""


ALARM_REPEAT = 0.25
ALARM_GIVE_UP = 20          # alarms swallowed (5 s past the limit): the process ends
GRACE = ALARM_REPEAT * ALARM_GIVE_UP + 1.0   # past the limit: the watcher ends the child
STUCK = 4 * ALARM_REPEAT    # ... or sooner, if no alarm was handled in this long
POLL = 0.25                 # how often the watcher looks at the deadline
STOPPED = "emu: error: your VMM ran for more than"     # the watcher's line begins so
INT_WAIT = 0.2              # how long it waits to hear the child got a SIGINT too


def alarm_handler(message: str):
    """The SIGALRM handler of a handler's time limit: ``HandlerAlarm`` each
    time; when a handler has swallowed ``ALARM_GIVE_UP`` of them (a bare
    ``except:`` in a loop) nothing in this process can stop it, and the
    process ends with one line (exit status 1) rather than hang."""
    fired = [0]

    def expired(signum, frame):
        fired[0] += 1
        if _SHARED is not None:         # the watcher's sign that Python runs
            _ALARMS.pack_into(_SHARED, _SLOT.size, fired[0])
        if fired[0] > ALARM_GIVE_UP:
            os.write(2, b"emu: error: your VMM ran past its time limit and caught every "
                        b"attempt to stop it (a bare 'except:' in a loop?): stopped\n")
            os._exit(1)
        raise HandlerAlarm(message)
    return expired


# --- the in-process alarm, told to the watcher -----------------------------------------

# (deadline on the monotonic clock, 0 when no limit runs; when the limit
# ends; the limit) in a page shared with the watcher, then the alarms handled
# since the limit began; None when nobody watches.
_SHARED: mmap.mmap | None = None
_SLOT = struct.Struct("ddd")
_ALARMS = struct.Struct("q")


def start(seconds: float, message: str):
    """Start the limit: ``HandlerAlarm(message)`` after ``seconds`` (the
    main thread only); returns the SIGALRM handler it replaced."""
    old = signal.signal(signal.SIGALRM, alarm_handler(message))
    signal.setitimer(signal.ITIMER_REAL, seconds, ALARM_REPEAT)
    if _SHARED is not None:
        now = time.monotonic()
        _ALARMS.pack_into(_SHARED, _SLOT.size, 0)
        _SLOT.pack_into(_SHARED, 0, now + seconds + GRACE, now + seconds, seconds)
    return old


def stop() -> None:
    """Stop the limit's clock (the handler waits for simulated time, or is
    done)."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    if _SHARED is not None:
        _SLOT.pack_into(_SHARED, 0, 0.0, 0.0, 0.0)


# --- the watcher ------------------------------------------------------------------------

_PASSED_ON = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
                   if hasattr(signal, name))


def supervise() -> None:
    """Fork, and watch the child, which returns from here and does the
    work; this process ends with the child's status (see the module doc).
    Call it before any work and any thread; where fork or ``sigtimedwait``
    is missing, nothing is done (the in-process layer alone)."""
    global _SHARED
    if _SHARED is not None or not hasattr(os, "fork") or not hasattr(signal, "sigtimedwait"):
        return
    shared = mmap.mmap(-1, _SLOT.size + _ALARMS.size)   # MAP_SHARED: the child's writes are seen
    # The child's signal numbers, as it receives them (its wakeup fd): a
    # SIGINT sent to the whole group reached it already, and is not sent
    # again (a second KeyboardInterrupt would cut its "interrupted" short).
    told, tell = os.pipe()
    watched = {signal.SIGCHLD, *_PASSED_ON}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    # Blocked before the fork: the watcher takes them with sigtimedwait.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _SHARED = shared
        os.close(told)
        os.set_blocking(tell, False)
        signal.set_wakeup_fd(tell, warn_on_full_buffer=False)
        _die_with_parent()
        for stream in (sys.stdout, sys.stderr):
            try:                # what was written before a stop is not lost in a buffer
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError):
                pass
        return
    os.close(tell)
    os.set_blocking(told, False)
    os._exit(_watch(pid, shared, watched, told))


def _received(told: int, wait: float = 0.0) -> bytes:
    """The signal numbers the child received since the last look (waiting
    up to ``wait`` s for one)."""
    if wait and not select.select([told], [], [], wait)[0]:
        return b""
    try:
        return os.read(told, 4096)
    except (BlockingIOError, InterruptedError):
        return b""


def _watch(pid: int, shared: mmap.mmap, watched: set, told: int) -> int:
    """The watcher's loop: the child's exit status, once it ends."""
    while True:
        info = signal.sigtimedwait(watched, POLL)
        if info is None:
            _received(told)                     # (forgotten: they came before)
            slot = _SLOT.unpack_from(shared)
            deadline, ends, limit = slot
            now = time.monotonic()
            if deadline and (now > deadline or (
                    now > ends + STUCK and not _ALARMS.unpack_from(shared, _SLOT.size)[0])) \
                    and _SLOT.unpack_from(shared) == slot:   # (not torn, nor a new limit)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os.write(2, (f"{STOPPED} {limit:g} s in one call that Python cannot "
                             "interrupt (a long computation in C?): stopped\n").encode())
                return 1
        elif info.si_signo == signal.SIGCHLD:
            done, status = os.waitpid(pid, os.WNOHANG)   # (a stopped child: not done)
            if done:
                return _exit_status(status)
        elif info.si_pid != 0:
            # Sent by a process (``kill``): the child's to take.  From the
            # terminal (Ctrl-C: no sender) it went to the whole foreground
            # group, the child included -- and so did a SIGINT sent to the
            # group (``killpg``), which the child says it received.
            if info.si_signo == signal.SIGINT and \
                    bytes([signal.SIGINT]) in _received(told, INT_WAIT):
                continue
            os.kill(pid, info.si_signo)
            _received(told, INT_WAIT)           # (the child's word for this one)
        elif info.si_signo == signal.SIGINT:
            _received(told, INT_WAIT)           # (the child's word for the terminal's)


def _exit_status(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return code
    # Killed by a signal: die of the same one, as the child did.
    sig = -code
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
    os.kill(os.getpid(), sig)
    return 128 + sig


def _die_with_parent() -> None:
    """The child ends if the watcher is killed (Linux): no orphan goes on
    grading or listening on a port."""
    parent = os.getppid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError, ImportError):
        return
    if os.getppid() != parent:       # it died before prctl took
        os._exit(1)
