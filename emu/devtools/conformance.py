"""Replay IA-32 paging conformance vectors against the hardware walker.

    python -m emu.devtools.conformance FILE.jsonl [FILE ...] [-v]

Each line of a vector file is one memory access recorded on a real x86 model
(the vectors: ``tests/conformance/``; ``load_vectors`` and ``check_vector``
below read each field).  For each vector the runner builds the 16 MiB
physical memory the recorder had, performs the access through
``emu.hw.paging.walk`` and compares every recorded field.  Each difference is printed as one line
``<id> [<class>] <field>: expected <x>, got <y>``; the last line is exactly
``N passed, M failed``.  Exit status: 0 when nothing failed, 1 when a vector
failed, 2 (with a one-line message) for a missing file or a malformed line.

The value a write stores.  The vectors record it as ``value_written``, read
back from ``byte_paddrs`` after the store.  It is not derived from anything
else in the vector (it is not the fill pattern, at the pa or the va, nor the
read sentinel ``0xEEEEEEEE``; every byte is >= 0x80, which the < 0x80 fill
pattern can never produce, so the recorder could tell a stored byte from an
untouched one): it is the store instruction's operand, chosen per vector.
The runner therefore takes it as the access's input, stores it through the
translation it computed, and checks that the bytes read back at its own
physical addresses give ``value_written``.  A write the vector records as a
fault stores ``FAULT_STORE``; the runner checks that no byte was stored at
all (writes are all-or-nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from ..hw.memory import PAGE_SHIFT, BusError, PhysMem
from ..hw.paging import Walk, walk

MEM_SIZE = 16 << 20            # physical memory of the recorder
PATTERN_START = 4 << 20        # [4 MiB, 16 MiB) holds the fill pattern
PATTERN_MUL = 0x9E3779B1
FAULT_STORE = 0xA5A5A5A5       # stored by writes expected to fault (must store nothing)
PF_VECTOR = 14
KINDS = ("read", "write", "fetch")


def pattern_byte(pa: int) -> int:
    """The fill pattern's byte at ``pa`` (always < 0x80)."""
    return ((pa * PATTERN_MUL) & 0xFFFFFFFF) >> 25


try:
    import numpy as _np

    _OFFSETS = _np.arange(1 << PAGE_SHIFT, dtype=_np.uint64)

    def _pattern_page(pn: int) -> bytearray:
        p = _OFFSETS + _np.uint64(pn << PAGE_SHIFT)
        return bytearray((((p * _np.uint64(PATTERN_MUL)) & _np.uint64(0xFFFFFFFF))
                          >> _np.uint64(25)).astype(_np.uint8).tobytes())
except ImportError:  # pragma: no cover - numpy is a dependency, this is a fallback
    def _pattern_page(pn: int) -> bytearray:
        base = pn << PAGE_SHIFT
        return bytearray(pattern_byte(base + i) for i in range(1 << PAGE_SHIFT))


class VectorMem(PhysMem):
    """The recorder's physical memory: zeros below 4 MiB, the fill pattern
    above (generated page by page on first touch).  While ``log`` is a dict,
    ``write32`` (the walker's entry updates) records each word's value before
    its first write and ``write8`` (data stores) counts stored bytes."""

    def __init__(self) -> None:
        super().__init__(MEM_SIZE)
        self.log: dict[int, int] | None = None
        self.stores = 0

    def page(self, pn: int) -> bytearray:
        pg = self.pages.get(pn)
        if pg is None and (PATTERN_START >> PAGE_SHIFT) <= pn < self.npages:
            pg = self.pages[pn] = _pattern_page(pn)
        return pg if pg is not None else super().page(pn)

    def peek_page(self, pn: int) -> bytes:
        if pn not in self.pages and (PATTERN_START >> PAGE_SHIFT) <= pn < self.npages:
            return self.page(pn)
        return super().peek_page(pn)

    def write32(self, addr: int, value: int) -> None:
        if self.log is not None and addr not in self.log:
            self.log[addr] = self.read32(addr)
        super().write32(addr, value)

    def write8(self, addr: int, value: int) -> None:
        if self.log is not None:
            self.stores += 1
        super().write8(addr, value)

    def changed_entries(self) -> dict[int, int]:
        """pa -> new value of every word written since ``log`` was set whose
        value now differs from before."""
        log = self.log or {}
        return {pa: self.read32(pa) for pa, old in log.items() if self.read32(pa) != old}


@dataclass(frozen=True, slots=True)
class Access:
    """One access as the CPU performs it: a #PF or the bytes it touched."""

    fault: bool
    cr2: int | None            # first byte of the access inside the faulting page
    error_code: int | None
    fault_page: int | None     # 0 = first page of the access, 1 = the second
    byte_pas: tuple[int, ...]  # pa of each byte, in va order (empty on a fault)
    value: int | None          # value read, or value stored
    walks: tuple[Walk, ...]    # one per page translated, lowest first


def access(mem, cr3: int, va: int, size: int, kind: str, *, user: bool = False,
           wp: bool = False, pse: bool = False, value: int = 0) -> Access:
    """Translate and perform a ``size``-byte read, write or fetch at ``va``.

    A page-crossing access translates its pages lowest first and reports the
    first fault; a page translated before the fault keeps the A/D bits its
    walk set.  A write stores only after every page translated."""
    write = kind == "write"
    fetch = kind == "fetch"
    walks = []
    byte_pas: list[int] = []
    pos = 0
    while pos < size:
        piece_va = (va + pos) & 0xFFFFFFFF
        n = min(size - pos, 0x1000 - (piece_va & 0xFFF))
        w = walk(mem, cr3, piece_va, write=write, user=user, fetch=fetch, wp=wp, pse=pse)
        walks.append(w)
        if w.fault:
            return Access(True, piece_va, w.error_code, len(walks) - 1, (), None, tuple(walks))
        byte_pas.extend(range(w.pa, w.pa + n))
        pos += n
    if write:
        value &= (1 << (8 * size)) - 1
        for i, pa in enumerate(byte_pas):
            mem.write8(pa, (value >> (8 * i)) & 0xFF)
    else:
        value = sum(mem.read8(pa) << (8 * i) for i, pa in enumerate(byte_pas))
    return Access(False, None, None, None, tuple(byte_pas), value, tuple(walks))


class VectorError(ValueError):
    """A vector line that is not a vector."""


_REQUIRED = ("id", "cr0_wp", "cr4_pse", "cpl", "cr3", "entries", "access", "expect")


def check_vector(vec) -> None:
    """Raise ``VectorError`` unless ``vec`` has the fields the runner uses."""
    if not isinstance(vec, dict):
        raise VectorError("not a JSON object")
    for key in _REQUIRED:
        if key not in vec:
            raise VectorError(f"missing field '{key}'")
    acc, exp = vec["access"], vec["expect"]
    if not isinstance(acc, dict) or not isinstance(exp, dict):
        raise VectorError("'access' and 'expect' must be objects")
    for key in ("kind", "vaddr", "size"):
        if key not in acc:
            raise VectorError(f"missing field 'access.{key}'")
    if acc["kind"] not in KINDS:
        raise VectorError(f"access.kind {acc['kind']!r} is not one of {', '.join(KINDS)}")
    if acc["size"] not in (1, 2, 4):
        raise VectorError(f"access.size {acc['size']!r} is not 1, 2 or 4")
    if "fault" not in exp:
        raise VectorError("missing field 'expect.fault'")
    for e in list(vec["entries"]) + list(vec.get("code_bytes", [])):
        if not isinstance(e, dict) or "paddr" not in e or "value" not in e:
            raise VectorError("an entry or code byte lacks 'paddr'/'value'")


def _hex(x) -> str:
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:#x}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_hex(v) for v in x) + "]"
    return repr(x)


def build_mem(vec: dict) -> VectorMem:
    """The memory of the README's model with the vector's entries and code."""
    mem = VectorMem()
    for e in vec["entries"]:
        mem.write32(e["paddr"], e["value"])
    for b in vec.get("code_bytes", ()):
        mem.write8(b["paddr"], b["value"])
    return mem


def replay(mem, vec: dict, value: int = 0) -> Access:
    """Perform the vector's access on ``mem`` (CR3 as loaded: low bits too)."""
    acc = vec["access"]
    return access(mem, vec.get("cr3_reg", vec["cr3"]), acc["vaddr"], acc["size"],
                  acc["kind"], user=vec["cpl"] == 3, wp=bool(vec["cr0_wp"]),
                  pse=bool(vec["cr4_pse"]), value=value)


def run_vector(vec: dict) -> list[str]:
    """Replay one vector; the differences found (empty when it passes)."""
    check_vector(vec)
    acc, exp = vec["access"], vec["expect"]
    kind = acc["kind"]
    mem = build_mem(vec)
    mem.log = {}
    value = exp.get("value_written", FAULT_STORE) if kind == "write" else 0
    try:
        got = replay(mem, vec, value)
    except BusError as err:
        return [f"outcome: expected {'#PF' if exp['fault'] else 'success'}, got {err}"]
    diffs: list[str] = []

    def cmp(field: str, want, have) -> None:
        if want != have:
            diffs.append(f"{field}: expected {_hex(want)}, got {_hex(have)}")

    cmp("fault", bool(exp["fault"]), got.fault)
    if exp["fault"] and got.fault:
        cmp("vector", exp.get("vector", PF_VECTOR), PF_VECTOR)
        for field, have in (("cr2", got.cr2), ("error_code", got.error_code),
                            ("fault_page", got.fault_page)):
            if field in exp:
                cmp(field, exp[field], have)
        if mem.stores:
            diffs.append(f"memory: expected no byte stored by a faulting write, "
                         f"got {mem.stores}")
    elif got.fault:
        diffs.append(f"outcome: got #PF at cr2 {got.cr2:#x}, error code "
                     f"{got.error_code:#x}, page {got.fault_page}")
    elif exp["fault"]:
        diffs.append(f"outcome: got success at pa {got.byte_pas[0]:#x}")
    else:
        if "paddr" in exp:
            cmp("paddr", exp["paddr"], got.byte_pas[0])
        if "byte_paddrs" in exp:
            cmp("byte_paddrs", exp["byte_paddrs"], list(got.byte_pas))
        if "value_read" in exp:
            cmp("value_read", exp["value_read"], None if kind == "write" else got.value)
        if "value_written" in exp:
            # What landed at the pa's this walker computed, read back.
            stored = sum(mem.read8(pa) << (8 * i) for i, pa in enumerate(got.byte_pas))
            cmp("value_written", exp["value_written"], stored if kind == "write" else None)
    want = {e["paddr"]: e["value"] for e in exp.get("entries_after", ())}
    have = mem.changed_entries()
    for pa in sorted(want.keys() | have.keys()):
        if want.get(pa) != have.get(pa):
            w, h = want.get(pa), have.get(pa)
            diffs.append(f"entries_after[{pa:#x}]: expected "
                         f"{'unchanged' if w is None else _hex(w)}, "
                         f"got {'unchanged' if h is None else _hex(h)}")
    return diffs


def load_vectors(path: str) -> list[tuple[int, dict]]:
    """(line number, vector) of every non-blank line; raises ``VectorError``
    naming the line for malformed JSON or a line that is not a vector."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                vec = json.loads(line)
            except json.JSONDecodeError as err:
                raise VectorError(f"{path}:{lineno}: malformed JSON: {err.msg} "
                                  f"(column {err.colno})") from None
            try:
                check_vector(vec)
            except VectorError as err:
                raise VectorError(f"{path}:{lineno}: malformed vector: {err}") from None
            out.append((lineno, vec))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emu.devtools.conformance",
        description="Replay IA-32 paging conformance vectors against the walker.")
    parser.add_argument("files", nargs="+", metavar="FILE.jsonl")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the walks of each failing vector")
    def one_line_error(message: str):
        print(f"python -m emu.devtools.conformance: error: {message}", file=sys.stderr)
        raise SystemExit(2)
    parser.error = one_line_error
    args = parser.parse_args(argv)
    vectors = []
    for path in args.files:
        try:
            vectors += [(path, lineno, vec) for lineno, vec in load_vectors(path)]
        except OSError as err:
            print(f"emu.devtools.conformance: cannot read {path}: {err.strerror or err}")
            return 2
        except VectorError as err:
            print(f"emu.devtools.conformance: {err}")
            return 2
    passed = failed = 0
    for path, lineno, vec in vectors:
        try:
            diffs = run_vector(vec)
        except VectorError as err:   # pragma: no cover - load_vectors checked it
            print(f"emu.devtools.conformance: {path}:{lineno}: malformed vector: {err}")
            return 2
        if not diffs:
            passed += 1
            continue
        failed += 1
        tag = f"{vec['id']} [{vec.get('class', '?')}]"
        for d in diffs:
            print(f"{tag} {d}")
        if args.verbose:
            print(f"  ({path}:{lineno})")
            _print_walks(vec)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def _print_walks(vec: dict) -> None:
    """Replay ``vec`` again and print its walk records (for -v)."""
    try:
        got = replay(build_mem(vec), vec, vec["expect"].get("value_written", FAULT_STORE))
    except BusError as err:
        print(f"  {err}")
        return
    for w in got.walks:
        print("  " + w.describe().replace("\n", "\n  "))


if __name__ == "__main__":
    sys.exit(main())
