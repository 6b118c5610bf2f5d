"""Expressions: the tree ``exprparse.py`` parses them into, its values, and
numbers told from addresses, as NASM does.

As in NASM, arithmetic is on 64-bit values: ``/`` and ``%`` divide
unsigned, ``//`` and ``%%`` signed (truncating toward zero), ``>>`` shifts
in zeros and ``>>>`` copies the sign bit, a shift counts by the low six bits
of its count (``1 << 64`` is 1, ``1 << -1`` is ``1 << 63``: NASM's values,
made by the 64-bit shifts of the machine it runs on); a comparison is
the sign of the difference in 64 bits, as NASM's (signed, but
``0x8000000000000000 < 5`` is 0: the difference wraps).  A
character constant is its bytes, little-endian ('ab' is 0x6261).  A sum,
difference, product or shift beyond 64 bits wraps, as in NASM (which keeps
hostile input cheap too: no value grows past 64 bits).

Numbers and addresses.  ``$``, ``$$`` and labels are addresses in a
section; numbers and constants made of numbers are scalars.  An address
minus an address of the same section is a number; ``/``, ``%``, shifts,
bitwise and logical operators and comparisons take numbers only, and a
value the program stores must be a number or one address plus or minus a
number (``rel`` computes this; the assembler checks it).  Registers parse
(memory operands need them) but evaluating one is an error.
"""

from __future__ import annotations

from typing import Protocol

from .. import isa
from .lexer import Loc

LIMIT = 1 << 64         # |intermediate value| must stay below this
MASK64 = LIMIT - 1

REGISTERS: dict[str, tuple[str, int]] = {
    **{name: ("r", n) for n, name in enumerate(isa.REGS32)},
    **{name: ("b", n) for n, name in enumerate(isa.REGS8)},
    **{name: ("c", n) for name, n in isa.CREGS.items()},
    **{name: ("w", n) for n, name in enumerate(isa.REGS16)},
    "dx": ("dx", isa.EDX),     # also the 16-bit register (operands.py)
}
NUMBERS_ONLY = ("needs numbers, not addresses: '$' and labels are addresses, "
                "'$ - $$' and 'label - $$' are numbers")

Rel = dict  # section -> coefficient: how many times a value holds its start


class Env(Protocol):
    """What evaluation needs from the assembler."""

    loc: Loc
    here: int          # value of $
    seg_start: int     # value of $$
    section: object    # the section $ and $$ are in

    def lookup(self, name: str, col: int) -> int: ...

    def lookup_rel(self, name: str, col: int) -> Rel: ...


class Node:
    """An expression tree node.

    ``col`` points at its token (the operator of a binary node); ``start``
    at the first token of the text it was parsed from, parentheses included.
    ``rel(env)`` is the value's sections and their coefficients ({} for a
    number), raising the error NASM gives for an address where a number
    must be.
    """

    __slots__ = ("col", "start")
    col: int
    start: int

    def ev(self, env: Env) -> int:
        raise NotImplementedError

    def rel(self, env: Env) -> Rel:
        return {}

    def children(self) -> tuple[Node, ...]:
        return ()


class Num(Node):
    __slots__ = ("value",)

    def __init__(self, value: int, col: int):
        self.value, self.col = value, col
        self.start = col

    def ev(self, env: Env) -> int:
        return self.value


class Sym(Node):
    __slots__ = ("name",)

    def __init__(self, name: str, col: int):
        self.name, self.col = name, col
        self.start = col

    def ev(self, env: Env) -> int:
        return env.lookup(self.name, self.col)

    def rel(self, env: Env) -> Rel:
        return env.lookup_rel(self.name, self.col)


class Here(Node):
    """``$``: the address of the current statement."""

    __slots__ = ()

    def __init__(self, col: int):
        self.col = self.start = col

    def ev(self, env: Env) -> int:
        return env.here

    def rel(self, env: Env) -> Rel:
        return {env.section: 1}


class SegStart(Node):
    """``$$``: the address where the current section starts."""

    __slots__ = ()

    def __init__(self, col: int):
        self.col = self.start = col

    def ev(self, env: Env) -> int:
        return env.seg_start

    def rel(self, env: Env) -> Rel:
        return {env.section: 1}


class Reg(Node):
    """A register name; legal only as a term of a memory operand."""

    __slots__ = ("kind", "name", "num")

    def __init__(self, name: str, col: int):
        self.name, self.col = name, col
        self.start = col
        self.kind, self.num = REGISTERS[name]

    def ev(self, env: Env) -> int:
        raise env.loc.error(f"register '{self.name}' cannot be used in an expression",
                            self.col)

    rel = ev


class Unary(Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node, col: int):
        self.op, self.operand, self.col = op, operand, col
        self.start = col

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)

    def ev(self, env: Env) -> int:
        v = self.operand.ev(env)
        if self.op == "-":
            return _bounded(-v, env, self.col)
        if self.op == "~":
            return signed64(~v)          # (64 bits: ~0xffffffffffffffff is 0)
        if self.op == "!":
            return int(v & MASK64 == 0)
        return v

    def rel(self, env: Env) -> Rel:
        r = self.operand.rel(env)
        if r and self.op in "~!":
            raise env.loc.error(f"'{self.op}' {NUMBERS_ONLY}", self.col)
        return {s: -c for s, c in r.items()} if self.op == "-" else r


class Binary(Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: Node, right: Node, col: int):
        self.op, self.left, self.right, self.col = op, left, right, col
        self.start = left.start

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def ev(self, env: Env) -> int:
        a = self.left.ev(env)
        b = self.right.ev(env)
        op = self.op
        if op == "+":
            return _bounded(a + b, env, self.col)
        if op == "-":
            return _bounded(a - b, env, self.col)
        if op == "*":
            return _bounded(a * b, env, self.col)
        if op in ("/", "%", "//", "%%"):
            return _divide(op, a, b, env, self.col)
        if op in ("<<", "<<<", ">>", ">>>"):
            b &= 63             # NASM's count: its low six bits (x86's, for 64 bits)
            if op[0] == ">":
                return ((a & MASK64) if op == ">>" else signed64(a)) >> b
            return _bounded(a << b, env, self.col)
        if op == "&":
            return a & b
        if op == "|":
            return a | b
        if op == "^":
            return a ^ b
        return _LOGIC[op](a, b)

    def rel(self, env: Env) -> Rel:
        ra = self.left.rel(env)
        rb = self.right.rel(env)
        op = self.op
        if not ra and not rb:
            return {}
        if op in ("+", "-"):
            out = dict(ra)
            sign = 1 if op == "+" else -1
            for s, c in rb.items():
                out[s] = out.get(s, 0) + sign * c
            return {s: c for s, c in out.items() if c}
        if op == "*" and not (ra and rb):
            k = self.right.ev(env) if ra else self.left.ev(env)
            return {s: c * k for s, c in (ra or rb).items() if c * k}
        raise env.loc.error(f"'{op}' {NUMBERS_ONLY}", self.col)


# NASM's integer base-2 logarithms (``__?ilog2e?__(x)`` ...; ``%use ifunc``
# names them ilog2e ...): e exact, f rounded down, c up; w, fw, cw as e, f,
# c where NASM warns of a value that is not a power of two (an error here).
ILOG2 = {f"__{q}ilog2{k}{q}__": k for k in ("e", "w", "f", "c", "fw", "cw") for q in ("", "?")}


class Log2(Node):
    """``__?ilog2X?__(arg)``: the base-2 logarithm of a number, as 64 bits."""

    __slots__ = ("arg", "kind")

    def __init__(self, kind: str, arg: Node, col: int):
        self.kind, self.arg, self.col = kind, arg, col
        self.start = col

    def children(self) -> tuple[Node, ...]:
        return (self.arg,)

    def ev(self, env: Env) -> int:
        v = self.arg.ev(env) & MASK64
        floor = v.bit_length() - 1 if v else 0
        exact = v != 0 and v & (v - 1) == 0      # (0 is no power of two: NASM's)
        if not exact and self.kind not in ("f", "c"):
            raise env.loc.error("ilog2 argument is not a power of two", self.col)
        return floor + (1 if "c" in self.kind and v and not exact else 0)

    def rel(self, env: Env) -> Rel:
        if self.arg.rel(env):
            raise env.loc.error(f"ilog2 {NUMBERS_ONLY}", self.col)
        return {}


class Cond(Node):
    """``cond ? yes : no``: ``yes`` where ``cond`` is not 0 (a number).
    Both are computed, as NASM computes them (``1 ? 2 : 1/0`` is a
    division by zero)."""

    __slots__ = ("cond", "no", "yes")

    def __init__(self, cond: Node, yes: Node, no: Node, col: int):
        self.cond, self.yes, self.no, self.col = cond, yes, no, col
        self.start = cond.start

    def children(self) -> tuple[Node, ...]:
        return (self.cond, self.yes, self.no)

    def ev(self, env: Env) -> int:
        taken = self.cond.ev(env) & MASK64
        yes, no = self.yes.ev(env), self.no.ev(env)
        return yes if taken else no

    def rel(self, env: Env) -> Rel:
        if self.cond.rel(env):
            raise env.loc.error(f"'?' {NUMBERS_ONLY}", self.col)
        yes, no = self.yes.rel(env), self.no.rel(env)
        return yes if self.cond.ev(env) & MASK64 else no


def signed64(v: int) -> int:
    """``v`` as a signed 64-bit value."""
    return ((v + (1 << 63)) & MASK64) - (1 << 63)


def _divide(op: str, a: int, b: int, env: Env, col: int) -> int:
    if b & MASK64 == 0:
        raise env.loc.error("division by zero", col)
    if op in ("/", "%"):
        ua, ub = a & MASK64, b & MASK64
        return ua // ub if op == "/" else ua % ub
    sa, sb = signed64(a), signed64(b)
    q = abs(sa) // abs(sb)
    if (sa < 0) != (sb < 0):
        q = -q
    return q if op == "//" else sa - q * sb


_LOGIC = {
    "==": lambda a, b: int(signed64(a) == signed64(b)),
    "=": lambda a, b: int(signed64(a) == signed64(b)),
    "!=": lambda a, b: int(signed64(a) != signed64(b)),
    "<>": lambda a, b: int(signed64(a) != signed64(b)),
    # NASM orders two values by the sign of their difference in 64 bits:
    # signed, but for a difference that wraps (0x8000000000000000 < 5 is 0).
    "<": lambda a, b: int(signed64(a - b) < 0),
    "<=": lambda a, b: int(signed64(a - b) <= 0),
    ">": lambda a, b: int(signed64(a - b) > 0),
    ">=": lambda a, b: int(signed64(a - b) >= 0),
    "&&": lambda a, b: int(bool(a & MASK64) and bool(b & MASK64)),
    "||": lambda a, b: int(bool(a & MASK64) or bool(b & MASK64)),
    "^^": lambda a, b: int(bool(a & MASK64) != bool(b & MASK64)),
}


def _bounded(v: int, env: Env, col: int) -> int:
    """``v`` as NASM has it: a result beyond 64 bits wraps (0xffffffffffffffff
    + 1 is 0); one within them is kept as it is (2**64 - 1 and -1 are the
    same 64 bits to everything that reads a value)."""
    return v if -LIMIT < v < LIMIT else signed64(v)


def walk(node: Node):
    """Every node of the tree, parents first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children())


def uses_here(node: Node) -> bool:
    """Whether the value depends on where the statement is ($ or $$)."""
    return any(isinstance(n, (Here, SegStart)) for n in walk(node))
