"""Loading a student's VMM: one Python file, one ``ShadowVmm`` subclass.

Whatever goes wrong is the student's to fix, and is said in one line that
names their file and line: a syntax error, an import that fails, a file
with no VMM class or with two, an exception or an endless loop in their
code (``student_error``).  ``builtin`` stands for the built-in VMM.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import sys
import threading
import traceback

from ..errors import EmuError
from ..vmm import handler_time
from ..vmm.api import ShadowVmm, VmmError
from ..vmm.handler_time import HandlerAlarm, HandlerTimeout, OsExit

BUILTIN = "builtin"
MODULE_PREFIX = "emu_student_vmm_"
IMPORT_LIMIT = 10.0          # host seconds a VMM file may take to import


class StudentError(EmuError):
    """The student's VMM failed (one line: what, where)."""


_REAL_EXIT = os._exit


def _guarded_exit(status=0):
    """``os._exit`` once a student's VMM is loaded: called from the VMM's
    own code it is ``sys.exit`` (an error of the VMM's, reported in one
    line), not the silent end of the grader -- status 0 and no report."""
    frame = sys._getframe(1)
    if frame.f_globals.get("__name__", "").startswith(MODULE_PREFIX):
        raise OsExit(status)
    _REAL_EXIT(status)


def load_vmm(path: str) -> type:
    """The ``ShadowVmm`` subclass defined in the file ``path``."""
    if path == BUILTIN:
        from ..vmm.builtin import BuiltinShadowVmm
        return BuiltinShadowVmm
    if not os.path.exists(path):
        raise EmuError(f"{path}: no such file")
    if os.path.isdir(path):
        raise EmuError(f"{path}: a directory, not a Python file")
    if not path.endswith(".py"):
        raise EmuError(f"{path}: a VMM is a Python file (.py)")
    real = os.path.realpath(path)
    digest = hashlib.sha1(real.encode()).hexdigest()[:12]
    name = f"{MODULE_PREFIX}{digest}"
    os._exit = _guarded_exit
    spec = importlib.util.spec_from_file_location(name, real)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    seen = interrupts_seen()
    try:
        with seen, time_limit(IMPORT_LIMIT, "importing it"):
            spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        where = f"{path}:{e.lineno}" if e.lineno else path
        raise StudentError(f"{where}: syntax error: {e.msg}") from None
    except BaseException as e:     # the student's module-level code
        sys.modules.pop(name, None)
        if isinstance(e, KeyboardInterrupt) and seen.count:
            raise                   # a Ctrl-C, not the module's own
        raise StudentError(student_error(e, path, "while importing it")) from None
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, ShadowVmm) and v.__module__ == name]
    if not found:
        raise StudentError(f"{path}: defines no VMM: write a class that subclasses "
                           "emu.vmm.api.ShadowVmm (emu lab new 1 gives a skeleton)")
    if len(found) > 1:
        names = ", ".join(sorted(c.__name__ for c in found))
        raise StudentError(f"{path}: defines {len(found)} VMM classes ({names}): keep one")
    cls = found[0]
    cls.source_path = path
    return cls


def student_error(exc: BaseException, path: str | None, doing: str = "") -> str:
    """One line: the student's exception, at the deepest line of their file."""
    where = _student_frame(exc, path)
    doing = f" {doing}" if doing else ""
    if isinstance(exc, HandlerTimeout):
        at = f" (it was at {where})" if where else ""
        return f"your VMM ran for too long{doing}{at}: an endless loop? {exc}"
    if isinstance(exc, VmmError):
        return str(exc)
    if isinstance(exc, OsExit):
        text = exc.call()
    elif isinstance(exc, SystemExit):
        text = f"sys.exit({exc.code!r})"
    else:
        text = str(exc).splitlines()[0] if str(exc) else ""
    name = getattr(exc, "shown_as", type(exc).__name__)
    what = f"{name}: {text}" if text else name
    at = f" at {where}" if where else ""
    return f"your VMM raised {what}{at}{doing}"


def student_message(exc: BaseException) -> str | None:
    """The one line for an exception raised in a loaded student VMM (or
    while it ran: a time limit, an API rule), or None if emu's own.  An
    exception raised again as another (simpy raises a process's exception
    anew, the first its cause) is the student's if its cause is."""
    for e in _chain(exc):
        path = None
        for fs, _ in traceback.walk_tb(e.__traceback__):
            name = fs.f_globals.get("__name__", "")
            if name.startswith(MODULE_PREFIX):
                path = fs.f_code.co_filename
        if path is not None or isinstance(e, (HandlerTimeout, VmmError)):
            return student_error(e, _shown(path) if path else None)
    return None


def _chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from (causes, contexts)."""
    seen = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


def _student_frame(exc: BaseException, path: str | None) -> str | None:
    if path is None or path == BUILTIN:
        return None
    real = os.path.realpath(path)
    found = None
    for fs in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(fs.filename) == real:
            found = f"{path}:{fs.lineno} in {fs.name}"
    return found


class time_limit:
    """``with time_limit(s, doing):`` raise ``HandlerTimeout`` after ``s``
    host seconds (the main thread only; elsewhere, no limit)."""

    def __init__(self, seconds: float, doing: str):
        self.seconds = seconds
        self.doing = doing
        self.armed = False

    def __enter__(self):
        import threading
        if threading.current_thread() is not threading.main_thread():
            return self
        seconds = self.seconds
        self.old = handler_time.start(seconds, f"(more than {seconds:g} s)")
        self.armed = True
        return self

    def __exit__(self, kind, exc, tb):
        if self.armed:
            handler_time.stop()
            signal.signal(signal.SIGALRM, self.old)
        if isinstance(exc, HandlerAlarm):
            raise HandlerTimeout(str(exc)).with_traceback(tb) from None
        return False


class interrupts_seen:
    """``with interrupts_seen() as seen:`` -- ``seen.count``: the SIGINTs
    this process received meanwhile (the main thread only; elsewhere none
    are watched, and any KeyboardInterrupt counts as one, as it does under
    a SIGINT handler not Python's own).  A KeyboardInterrupt without one
    was raised by code: the student's -- always so where SIGINT is ignored
    (a grader started in the background), since no Ctrl-C can come."""

    def __enter__(self):
        self.count = 0
        self.old = None
        if threading.current_thread() is not threading.main_thread():
            self.count = 1
            return self
        current = signal.getsignal(signal.SIGINT)
        if current is signal.default_int_handler:
            def received(signum, frame):
                self.count += 1
                raise KeyboardInterrupt
            self.old = signal.signal(signal.SIGINT, received)
        elif current not in (signal.SIG_IGN, signal.SIG_DFL):
            self.count = 1      # someone else's handler: it may raise one
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False
