"""Statements: what the parser makes of a line and the passes lay out.

``LabelDef``, ``EquDef``, ``Org`` and ``SectionDecl`` only define things;
``Data``, ``Reserve`` and ``Instruction`` take room and know their size from
their syntax (a reservation's once its count is known in pass 1); ``Times``
and ``Align`` repeat one of those.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import isa
from .expr import Node, signed64
from .lexer import Loc
from .operands import Operand, encode_insn


@dataclass
class Stmt:
    loc: Loc
    col: int              # column of the keyword / name, for errors


@dataclass
class LabelDef(Stmt):
    name: str


@dataclass
class EquDef(Stmt):
    name: str
    expr: Node


@dataclass
class Org(Stmt):
    expr: Node


@dataclass
class SectionDecl(Stmt):
    name: str
    attrs: dict[str, tuple[Node | str | bool, int]]   # name -> (value, column)


@dataclass
class Data(Stmt):
    width: int                             # 1, 2, 4 or 8 bytes per value
    items: list[Node | bytes | None]       # expressions, strings, None for '?' (zeros)
    size: int = 0

    def encode(self, env) -> bytes:
        out = bytearray()
        bits = self.width * 8
        lo, hi = -(1 << bits), (1 << bits) - 1   # NASM's: it warns only outside these
        name = {1: "db", 2: "dw", 4: "dd", 8: "dq"}[self.width]
        for item in self.items:
            if item is None:
                out += bytes(self.width)
                continue
            if isinstance(item, bytes):
                out += item + bytes(-len(item) % self.width)
                continue
            v = signed64(item.ev(env))     # (values are 64-bit: 2**64 - 1 is -1)
            if not lo <= v <= hi:
                raise env.loc.error(f"value {v} out of range for {name} ({lo}..{hi})",
                                    item.start)
            out += (v & hi).to_bytes(self.width, "little")
        return bytes(out)


# bytes an item of each reserves
RES_WIDTH = {"resb": 1, "resw": 2, "resd": 4, "resq": 8, "rest": 10, "reso": 16, "resy": 32,
             "resz": 64}


@dataclass
class Reserve(Stmt):
    width: int
    count: Node
    size: int = 0                          # set in pass 1

    def encode(self, env) -> bytes:
        return bytes(self.size)


@dataclass
class Instruction(Stmt):
    row: isa.Insn
    ops: list[Operand]
    size: int = 0

    def encode(self, env, at: int | None = None) -> bytes:
        """The bytes of the instruction at address ``at`` (default ``$``;
        a times line repeats it at later addresses, with the same ``$``)."""
        return encode_insn(self.row, self.ops, env, (env.here if at is None else at) + self.size)

    @property
    def relative(self) -> bool:
        return "rel" in self.row.operands


@dataclass
class Times(Stmt):
    count: Node
    inner: Data | Instruction | Reserve


@dataclass
class Align(Stmt):
    n: Node
    inner: Data | Instruction | Reserve | None  # None: nop (align), resb 1 (alignb)
    reserve: bool                               # alignb
    sect: bool = True                           # raises its section's alignment too


@dataclass
class SectAlign(Stmt):
    """``sectalign N``: the section's alignment raised to N (no bytes)."""
    n: Node
