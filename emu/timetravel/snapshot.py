"""Snapshots: the whole state of a run at a quiescent point, and back again.

A snapshot is taken at the start of a CPU batch, called from the vCPU's own
loop: no VM exit is being handled, no swap I/O is in flight, and every
event waiting in the simpy queue belongs to a process that can be started
again from its own state (the cycle-clock timer, the host's sharing scan).
Anywhere else ``capture`` declines (returns None) and the caller tries at a
later batch.

What is kept is the *data* object graph of the ``System`` -- CPU, MMU and
TLBs, memory, PMap, shadow or nested tables, host, devices, console,
statistics, even the translated-code caches -- pickled in process, with
these exceptions (``_Pickler``):

* memory pages (the ``bytearray`` pages of the CPU's memory: guest RAM
  natively, machine memory under a VMM) are not in the pickle: the snapshot
  holds each page as immutable ``bytes``, the *same* object as the previous
  snapshot's when the page did not change (copy-on-write in effect);
* the simpy Environment, its processes and events are left out; restoring
  makes a fresh Environment at the snapshot's time and starts the processes
  again, in the order their waits had in the queue, so the run goes on
  exactly as it would have;
* the trace bus keeps its state but not its subscribers, the console keeps
  its bytes but not its sink, the live progress view is dropped: the
  restorer gives new ones;
* functions are rebuilt around the same code objects with the copied
  globals and closure cells, so closures bound to the old objects (the
  MMU's hit path, the compiled blocks, the trace hooks) come back bound to
  the new ones;
* modules, code objects, the program image and large immutable values
  (``bytes`` of 256 bytes and more: swapped pages) are shared, not copied.

``restore(snapshot)`` gives a new ``System`` whose processes are started
but have not run: its first ``env.step()`` calls (one per process,
``Snapshot.restart``) put each at the wait it had, the vCPU last, which
then continues from the batch where the snapshot was taken.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from dataclasses import dataclass, field
from struct import Struct

import simpy
from simpy.events import Condition, Process
from simpy.resources.base import BaseResource

from ..errors import EmuError
from ..hw.devices import Console
from ..simenv import Environment
from ..trace import TraceBus

BIG_BYTES = 256          # bytes objects this long and longer are shared, not copied


class SnapshotError(EmuError):
    """A run that cannot be snapshotted (several VMs on one machine ...)."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One saved state of a run (see the module doc)."""

    icount: int                  # instructions retired
    cycle: int                   # simulated time
    eip: int
    blob: bytes                  # the pickled object graph
    atoms: tuple                 # what the pickle shares by reference
    pages: dict                  # pn -> bytes of the CPU's memory (shared when unchanged)
    restart: tuple[str, ...]     # processes to start again, in their queue order
    extra: object = None         # the driver's own state at this point (the stepper's)
    changed: frozenset = field(default_factory=frozenset)  # pns changed since the previous
    extra_bytes: int = 0         # memory ``extra`` holds that no snapshot before it holds

    @property
    def blob_bytes(self) -> int:
        return len(self.blob)

    def __repr__(self) -> str:
        return (f"Snapshot(icount={self.icount}, cycle={self.cycle}, eip={self.eip:#x}, "
                f"{len(self.blob)} bytes, {len(self.pages)} pages)")


# --- the pickler ------------------------------------------------------------------------

def _immutable_records() -> tuple:
    """Record types that are never changed once made: shared, not copied
    (a name that moves away only costs space)."""
    from .. import isa
    from ..asm import Image
    from ..hw import translate
    names = ((translate, "BlockMeta"), (isa, "Decoded"), (isa, "Insn"), (isa, "Mem"))
    return (Image, *(getattr(m, n) for m, n in names if isinstance(getattr(m, n, None), type)))


_VALUE_TYPES = frozenset({int, str, float, bool, type(None), tuple, list, dict, set,
                          frozenset, bytearray, complex})
_ATOM_TYPES = (types.CodeType, types.ModuleType, Struct, type, *_immutable_records())
_BUILTIN = types.BuiltinFunctionType


class _Token:
    """Placeholders for what a snapshot leaves out."""

    ENV, NONE, SINK, DROP = ("env",), ("none",), ("sink",), ("drop",)


_module_dicts: dict[int, str] = {}
_module_count = -1


def _module_tokens() -> dict[int, tuple]:
    global _module_dicts, _module_count
    if len(sys.modules) != _module_count:
        _module_dicts = {id(m.__dict__): ("mod", name) for name, m in list(sys.modules.items())
                         if isinstance(m, types.ModuleType)}
        _module_count = len(sys.modules)
    return _module_dicts


class _Pickler(pickle.Pickler):
    def __init__(self, file, tokens: dict[int, tuple], atoms: list):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.tokens = tokens
        self.atoms = atoms
        self.atom_index: dict[int, int] = {}
        self.modules = _module_tokens()

    def _atom(self, obj) -> tuple:
        i = self.atom_index.get(id(obj))
        if i is None:
            i = self.atom_index[id(obj)] = len(self.atoms)
            self.atoms.append(obj)
        return ("atom", i)

    def persistent_id(self, obj):
        t = type(obj)
        if t in _VALUE_TYPES:
            if t is str:
                return self._atom(obj) if len(obj) >= BIG_BYTES else None
            if t is dict:
                return self.modules.get(id(obj))
            if t is bytearray:
                return self.tokens.get(id(obj))
            return None
        tok = self.tokens.get(id(obj))
        if tok is not None:
            return tok
        if t is bytes or t is str:
            return self._atom(obj) if len(obj) >= BIG_BYTES else None
        if isinstance(obj, _ATOM_TYPES) or getattr(t, "_snapshot_atom", False):
            return self._atom(obj)
        if t is _BUILTIN:
            owner = obj.__self__
            if owner is None or isinstance(owner, (types.ModuleType, Struct)):
                return self._atom(obj)
            return None
        if isinstance(obj, simpy.Event):
            return _Token.NONE       # processes and their events start again
        if isinstance(obj, simpy.Environment):
            return _Token.ENV
        if t is types.GeneratorType:
            raise SnapshotError(f"cannot snapshot a running generator ({obj.__qualname__})")
        return None

    def reducer_override(self, obj):
        t = type(obj)
        if t is types.FunctionType:
            if obj.__closure__ is None and _by_reference(obj):
                return NotImplemented
            state = (obj.__kwdefaults__, obj.__qualname__, obj.__dict__ or None)
            return (_function, (obj.__code__, obj.__globals__, obj.__name__, obj.__defaults__,
                                obj.__closure__), state, None, None, _function_state)
        if t is types.MethodType:
            return (types.MethodType, (obj.__func__, obj.__self__))
        if t is types.CellType:
            try:
                contents = obj.cell_contents
            except ValueError:
                return (types.CellType, ())
            return (types.CellType, (), contents, None, None, _cell_state)
        if t is TraceBus or isinstance(obj, TraceBus):
            # The bus keeps its count and clock; the subscribers are the restorer's.
            state = {k: v for k, v in obj.__dict__.items() if k not in ("_subs", "active")}
            return (_bus, (t,), state)
        if isinstance(obj, BaseResource):
            if obj.users or obj.queue:
                raise SnapshotError("a simpy resource is busy")
            return (_resource, (t, obj._env, obj.capacity))
        return NotImplemented


def _by_reference(fn) -> bool:
    """Can pickle name ``fn`` (a module-level function or a method)?"""
    mod = sys.modules.get(fn.__module__ or "")
    if mod is None or fn.__globals__ is not mod.__dict__ or "<" in fn.__qualname__:
        return False
    obj = mod
    for part in fn.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is fn


def _function(code, globals_, name, defaults, closure):
    return types.FunctionType(code, globals_, name, defaults, closure)


def _function_state(fn, state) -> None:
    kwdefaults, qualname, attrs = state
    fn.__kwdefaults__ = kwdefaults
    fn.__qualname__ = qualname
    if attrs:
        fn.__dict__.update(attrs)


def _cell_state(cell, contents) -> None:
    cell.cell_contents = contents


def _bus(cls):
    bus = cls.__new__(cls)
    bus._subs = []
    bus.active = False
    return bus


def _resource(cls, env, capacity):
    return cls(env, capacity)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, snap: Snapshot, env, sink):
        super().__init__(file)
        self.snap = snap
        self.env = env
        self.sink = sink
        self.made: dict[int, bytearray] = {}

    def persistent_load(self, tok):
        kind = tok[0]
        if kind == "page":
            pn = tok[1]
            page = self.made.get(pn)
            if page is None:
                page = self.made[pn] = bytearray(self.snap.pages[pn])
            return page
        if kind == "atom":
            return self.snap.atoms[tok[1]]
        if kind == "mod":
            return sys.modules[tok[1]].__dict__
        if kind == "env":
            return self.env
        if kind == "sink":
            return self.sink
        return None


# --- taking and restoring ---------------------------------------------------------------

def _waiting_processes(event) -> list | None:
    """The processes waiting on ``event`` (directly or through a condition);
    None if something else waits on it."""
    out = []
    for cb in event.callbacks or ():
        owner = getattr(cb, "__self__", None)
        if isinstance(owner, Process):
            out.append(owner)
        elif isinstance(owner, Condition):
            more = _waiting_processes(owner)
            if more is None:
                return None
            out.extend(more)
        else:
            return None
    return out


def _process_kinds(system) -> dict:
    from ..system import System
    from ..vmm.host import Host
    return {System._vcpu.__code__: "vcpu", System._timer_process.__code__: "timer",
            Host._sharing.__code__: "sharing", _resume_sharing.__code__: "sharing"}


def restart_order(system) -> tuple[str, ...] | None:
    """The processes to start again when restoring a snapshot taken now, in
    the order of their waits in the queue (the vCPU last when it is running
    now, at the start of a batch; in its place when it is held before one,
    ``System.max_batch_insns`` 0); None when the machine is not quiescent."""
    kinds = _process_kinds(system)
    order: list[str] = []
    seen = set()
    for when, _prio, _eid, event in sorted(system.env._queue, key=lambda e: e[:3]):
        procs = _waiting_processes(event)
        if not procs or len(procs) != 1:
            return None
        kind = kinds.get(procs[0]._generator.gi_code)
        if kind is None or kind in seen:
            return None
        if kind == "vcpu" and not (system.held and when == system.env.now):
            return None                        # only a vCPU held before its batch waits here
        if kind == "sharing":
            if getattr(system.host, "next_scan", None) != when:
                return None                    # hashing after a scan: not at its wait
        if kind == "timer":
            deadline = system.timer.deadline
            if deadline is None or when != max(deadline, int(system.env.now)):
                return None
        seen.add(kind)
        order.append(kind)
    if system.config.clock == "cycles" and "timer" not in seen:
        if system.timer.deadline is not None:
            return None                        # its wait is somewhere we do not know
        order.append("timer")                  # waiting for the guest to program it
    if getattr(system, "host", None) is not None and system.host.share_interval \
            and "sharing" not in seen:
        return None
    if "vcpu" not in seen:
        order.append("vcpu")                   # running: it goes on after the others
    return tuple(order)


def pages_of(system) -> dict:
    """pn -> bytearray of the memory the CPU is wired to."""
    return system.mem.pages


def capture(system, previous: dict | None, *, order: tuple[str, ...], extra=None,
            extra_bytes: int = 0, leave_out=()) -> Snapshot:
    """A snapshot of ``system`` now (``order``: from ``restart_order``).
    ``previous``: the pages of the snapshot before, to share unchanged ones.
    ``leave_out``: more objects to leave out of the snapshot (restored as
    None: the driver's own hooks); ``extra_bytes``: what ``extra`` costs
    (counted against the store's budget)."""
    if not getattr(system, "_own_host", True):
        raise SnapshotError("time travel works on a single VM: several VMs share "
                            "one machine here")
    previous = previous or {}
    pages = {}
    changed = set()
    tokens: dict[int, tuple] = {id(system.env): _Token.ENV}
    for pn, page in pages_of(system).items():
        old = previous.get(pn)
        if old is not None and old == page:
            pages[pn] = old
        else:
            pages[pn] = bytes(page)
            changed.add(pn)
        tokens[id(page)] = ("page", pn)
    changed.update(previous.keys() - pages.keys())
    console = system.console
    if isinstance(console, Console) and console.sink is not None:
        tokens[id(console.sink)] = _Token.SINK
    if system.progress is not None:
        tokens[id(system.progress)] = _Token.NONE
    for obj in leave_out:
        tokens[id(obj)] = _Token.DROP
    atoms: list = []
    buf = io.BytesIO()
    _Pickler(buf, tokens, atoms).dump(system)
    return Snapshot(icount=system.cpu.icount, cycle=int(system.env.now), eip=system.cpu.eip,
                    blob=buf.getvalue(), atoms=tuple(atoms), pages=pages,
                    restart=order, extra=extra, changed=frozenset(changed),
                    extra_bytes=extra_bytes)


def restore(snap: Snapshot, *, console_sink=None):
    """A new ``System`` in the state of ``snap``, its processes started (see
    the module doc); subscribe to its bus before the first ``env.step()``."""
    env = Environment(initial_time=snap.cycle)
    system = _Unpickler(io.BytesIO(snap.blob), snap, env, console_sink).load()
    for name, value in list(vars(system.cpu).items()):
        if value is None and name == "run":
            del vars(system.cpu)["run"]        # a driver's hook on the batch
    system._vcpu_process = None
    system._timer_changed = None
    system._wake = None
    for kind in snap.restart:
        if kind == "sharing":
            env.process(_resume_sharing(system.host))
        elif kind == "timer":
            env.process(system._timer_process())
        else:
            system._vcpu_process = env.process(system._vcpu())
    return system


def _resume_sharing(host):
    """The host's sharing process, resumed at its wait for the next scan
    (the body of ``Host._sharing``'s loop from its timeout on, then the
    loop itself)."""
    env = host.env
    yield env.timeout(host.next_scan - int(env.now))
    hashed = host.scan()
    if hashed:
        yield env.timeout(hashed * host.hash_cost)
    yield from host._sharing()


__all__ = ["Snapshot", "SnapshotError", "capture", "restart_order", "restore"]
