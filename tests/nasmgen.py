"""Random data programs in NASM's language, and their comparison with NASM.

NASM is the model: every program NASM assembles without a word must assemble
here to NASM's bytes, or be refused with one of the messages where this
assembler is stricter by design (docs/language.md, "Where emu is stricter than
NASM"); every program NASM refuses with an error must be refused here too (but
for a local label before the first non-local one, which NASM's later passes
scope differently from its first). The programs mix what a layout is made of:
numbers in every spelling, expressions over every operator, equ constants,
labels and local labels, `$` and `$$`, `db`/`dw`/`dd`/`dq` with strings,
`times`, `align`, `sectalign`, `incbin`, sections (`.bss` with `resb` ...
`resz` and `alignb`), `absolute` places and strucs read with `$`, and the
preprocessor's `%assign`/`%define`/`%if`/`%rep` over numbers; a third are
macro programs (``MacroProgram``) or layouts of sections (``layout_program``:
align=, start=, vstart=, follows=, nobits).

    python tests/nasmgen.py --programs N --addresses M --instructions K [--seed S]

runs N programs (the suite runs a few hundred: test_nasm.py) and prints
what it compared; a program that differs is printed whole.  Then M random
memory operands (``lea r32, [...]``): the address NASM encodes for each,
read back by ndisasm, must be the one encoded here (NASM's algebra of
registers included: ``[eax*5]`` is ``[eax + eax*4]``).  Then K random
instructions, a row of the ISA table each with random operands: what NASM
encodes (mnemonic, registers, addresses, immediates, read back by ndisasm)
must be what is encoded here.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from emu import isa  # noqa: E402
from emu.asm import assemble  # noqa: E402
from emu.errors import AsmError  # noqa: E402

OPERATORS = ["+", "-", "*", "/", "//", "%", "%%", "<<", ">>", ">>>", "<<<", "&", "|", "^",
             "==", "!=", "<", "<=", ">", ">=", "<>", "&&", "||", "^^"]
STRINGS = ["'ab'", '"xyz"', "'a'", "`a\\n`", "``", '"it\'s"']
# Where this assembler stops and NASM goes on (each documented): `==`/`<>`
# of two addresses (NASM compares their sections and offsets), an error
# inside an `%elif` NASM does not see (a division by zero, an
# __?ilog2e?__ of a number that is not a power of two).
STRICTER = ("needs numbers, not addresses", "division by zero",
            "ilog2 argument is not a power of two")
# ... and in a memory operand: registers that cancel out ([eax - eax + 5]),
# a displacement beyond 32 bits (NASM drops the bits above).
STRICTER_ADDRESSES = ("registers cancel out", "out of range for a displacement",
                      "out of range for a byte displacement")


# The files data programs include (incbin), written next to each program,
# and the ways a file's name may be quoted.
BLOBS = {"empty.bin": b"", "one.bin": b"\x5a", "some.bin": bytes(range(256)) + b"tail" * 20}
QUOTES = ('"{}"', "'{}'", "`{}`")


class Program:
    """One random program, built statement by statement."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.n = 0
        self.numbers: list[str] = []        # equ constants made of numbers
        self.labels: list[str] = []         # labels of the current section
        self.scope: str | None = None       # the last non-local label
        self.section = ".text"
        self.sect = ".text"                 # the section __?SECT?__ names
        self.sections = {".text"}
        self.lines = ["bits 32", f"org {rng.choice([0, 0x1000, 0x7c00, 0x100000])}"]

    # --- expressions -------------------------------------------------------------------
    def number(self) -> str:
        r = self.rng
        v = r.choice([0, 1, 2, 7, 8, 15, 16, 31, 32, 63, 100, 127, 128, 255, 256,
                      r.randrange(1 << 8), r.randrange(1 << 16), r.randrange(1 << 32),
                      1 << 63, (1 << 63) - 1, (1 << 64) - 1, r.randrange(1 << 64)])
        spell = r.randrange(13)
        if spell == 0:
            return hex(v)
        if spell == 1:
            return f"0{v:x}h"
        if spell == 2:
            return f"{v:b}b"
        if spell == 3:
            return f"{v:o}q"
        if spell == 4:
            return f"0o{v:o}"
        if spell == 5:
            return f"0b{v:b}"
        if spell == 6:
            return f"{v}d"
        if spell == 7 and 32 <= v < 127 and chr(v) not in "'\"`\\":
            return f"'{chr(v)}'"
        if spell == 8:
            return f"0d{v}"
        if spell == 9:
            return f"$0{v:x}"
        if spell == 10 and v > 255:
            return f"0x{v >> 8:x}_{v & 0xFF:02x}"
        if spell == 11:
            return f"{v:o}o"
        return str(v)

    def leaf(self, numbers_only: bool) -> str:
        r = self.rng
        k = r.randrange(10)
        if k < 5:
            return self.number()
        if k < 7 and self.numbers:
            return r.choice(self.numbers)
        if not numbers_only and k < 8 and len(self.labels) >= 2:
            a, b = r.sample(self.labels, 2)
            return f"({a} - {b})"
        if not numbers_only and k < 9:
            return "($ - $$)"
        return self.number()

    def expr(self, numbers_only: bool = False, depth: int = 0) -> str:
        r = self.rng
        if depth > 3 or r.random() < 0.35:
            return self.leaf(numbers_only)
        k = r.randrange(10)
        if k == 0:
            return r.choice("-~!+") + self.expr(numbers_only, depth + 1)
        if k == 1:
            return f"({self.expr(numbers_only, depth + 1)})"
        if k == 3 and r.random() < 0.3:     # NASM's base-2 logarithms
            kind = r.choice(["f", "c", "e", "f", "c"])
            return f"__?ilog2{kind}?__({self.expr(True, depth + 1)})"
        if k == 2 and r.random() < 0.4:     # NASM's lowest operator, in parentheses
            cond, yes, no = (self.expr(numbers_only, depth + 1) for _ in range(3))
            return f"({cond} ? {yes} : {no})"
        op = r.choice(OPERATORS)
        left, right = self.expr(numbers_only, depth + 1), self.expr(numbers_only, depth + 1)
        if op in ("<<", "<<<"):
            left = f"({left} & 0xffffff)"          # (most shifts stay within 64 bits)
        return f"{left} {op} {right}"

    def masked(self, width: int) -> str:
        """A value for a ``width``-bit item: mostly masked to fit, sometimes
        not, sometimes a negative number near the item's bounds."""
        r = self.rng
        if r.random() < 0.1 and width < 64:
            return str(-r.randint(1 << (width - 1), 1 << width))
        e = self.expr()
        return e if r.random() < 0.2 else f"({e}) & {hex((1 << width) - 1)}"

    # --- statements --------------------------------------------------------------------
    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def label(self) -> str:
        if self.scope is not None and self.rng.random() < 0.4:
            local = self.name(".l")
            self.labels.append(self.scope + local)
            return local
        self.scope = self.name("g")
        self.labels.append(self.scope)
        return self.scope

    def statement(self) -> str:
        r = self.rng
        k = r.randrange(20)
        if k == 0:
            return self.switch()
        if self.section == ".bss":
            return self.reserve(k)
        if k < 5:
            width = r.choice([8, 16, 32, 64])
            items = [r.choice(STRINGS) if width < 64 and r.random() < 0.15 else self.masked(width)
                     for _ in range(r.randint(1, 3))]
            return f"{ {8: 'db', 16: 'dw', 32: 'dd', 64: 'dq'}[width]} " + ", ".join(items)
        if k == 5:
            return f"times ({self.expr()}) % 5 db {self.number()} & 0xff"
        if k == 6:
            name = self.name("c")
            line = f"{name} equ {self.expr(numbers_only=True)}"
            self.numbers.append(name)
            return line
        if k in (7, 8):
            return f"{self.label()}:" + (f" db {self.number()} & 0xff" if k == 8 else "")
        if k == 9:
            return f"align {r.choice([1, 2, 4, 8, 16])}, db {r.randrange(256)}"
        if k == 10:
            name = self.name("A")
            return f"%assign {name} {self.expr(numbers_only=True)}\ndd ({name}) & 0xffffffff"
        if k == 11:
            a, b = self.expr(numbers_only=True), self.expr(numbers_only=True)
            n1, n2 = (r.choice(["", "n"]) for _ in range(2))
            return f"%if{n1} {a}\ndb 1\n%elif{n2} {b}\ndb 2\n%else\ndb 3\n%endif"
        if k == 12:
            return f"%rep ({self.number()}) % 4\ndb ($ - $$) & 0xff\n%endrep"
        if k == 13:
            name = self.name("D")
            return f"%define {name} ({self.expr(numbers_only=True)})\ndw ({name}) & 0xffff"
        if k == 14 and self.labels:
            where = r.choice(self.labels)
            return f"dd {where}, {where} + {r.randrange(64)}, $, $$ + {r.randrange(8)}"
        if k == 15:
            return self.layout()
        if k == 16:
            return self.incbin()
        return f"dd ({self.expr()}) & 0xffffffff, $ - $$"

    def incbin(self) -> str:
        """A file of ``BLOBS`` (written next to the program), whole or from
        a skip, a count of it or all."""
        r = self.rng
        line = f"incbin {r.choice(QUOTES).format(r.choice(list(BLOBS)))}"
        if r.random() < 0.7:
            line += f", ({self.expr(numbers_only=True)}) & 0x1ff"
            if r.random() < 0.6:
                line += f", ({self.expr(numbers_only=True)}) & 0xff"
        head = f"{self.label()}: " if r.random() < 0.3 else ""
        return head + (f"times {r.randrange(3)} " if r.random() < 0.2 else "") + line

    def switch(self) -> str:
        """A section line: NASM's user-level one (which __?SECT?__ then
        names), its primitive form in brackets (which it does not), or the
        line __?SECT?__ (back to the last user-level one)."""
        self.labels, self.scope = [], None     # (labels of one section: their differences)
        k = self.rng.randrange(10)
        if k == 0:
            self.section = self.sect
            return self.rng.choice(["__?SECT?__", "__SECT__"])
        sec = self.rng.choice([".text", ".data", ".bss"])
        self.section = sec
        attrs = ""
        if sec not in self.sections:
            self.sections.add(sec)
            if self.rng.random() < 0.3:
                attrs = f" align={self.rng.choice([4, 8, 16, 32])}"
        if k < 4:
            line = f"[section {sec}{attrs}]"
        else:
            line = f"section {sec}{attrs}"
            self.sect = sec
        k = self.rng.randrange(8)
        if k == 0:          # the section's alignment raised, or align's raise turned off/on
            line += f"\nsectalign {self.rng.choice([1, 2, 4, 8, 16, 32, 64])}"
        elif k == 1:
            line += f"\nsectalign {self.rng.choice(['off', 'on', 'OFF'])}"
        return line

    def reserve(self, k: int) -> str:
        r = self.rng
        if k < 10:
            head = f"{self.label()}: " if r.random() < 0.5 else ""
            if r.random() < 0.2:        # NASM's items left unset: space, as resX
                return f"{head}d{r.choice('bwdq')} " + ", ".join("?" * r.randint(1, 3))
            return f"{head}res{r.choice('bwdqtoyz')} {r.randrange(1, 20)}"
        if k < 13:
            return f"alignb {r.choice([1, 2, 4, 8, 16])}"
        return f"resb ({self.expr(numbers_only=True)}) % 7"

    def layout(self) -> str:
        """An absolute place or a struc, its `$` read by an equ, and a
        section line back to where the program was."""
        r = self.rng
        name = self.name("s")
        if r.random() < 0.5:
            head = [f"absolute {r.choice(['$', hex(r.randrange(0x10000)), '$ + 16'])}"]
        else:
            head = [f"struc {name}"]
        fields = [(f".f{i}", r.choice("bwdqtoyz"), r.randrange(1, 6))
                  for i in range(r.randint(1, 3))]
        body = [f"{field}: res{unit} {count}" if unit not in "bwdq" or r.random() < 0.7
                else f"{field}: d{unit} " + ", ".join("?" * count) for field, unit, count in fields]
        at = r.randrange(len(body) + 1)
        body.insert(at, f"{name}_here equ $ - $$ + 0")
        tail = ["endstruc"] if head[0].startswith("struc") else []
        self.scope = None
        self.labels = []
        # back: a section line, or after endstruc none: NASM's endstruc goes
        # back to __?SECT?__ (after absolute, which sets __?SECT?__ to itself,
        # only a section line leaves it)
        if not tail or r.random() < 0.5:
            back = f"section {self.section}"
            self.sect = self.section
        else:
            back = ""
            self.section = self.sect
        use = f"dd {name}_here" + (f", {name}_size" if tail else "")
        if tail and self.section != ".bss" and r.random() < 0.7:
            # an instance: some fields, in order, each with data that fits it
            use += f"\n{name}_i: istruc {name}"
            for field, unit, count in fields:
                if unit in "bwdq" and r.random() < 0.6:
                    width = {"b": 1, "w": 2, "d": 4, "q": 8}[unit]
                    items = ", ".join(str(r.randrange(1 << (8 * min(width, 4))))
                                      for _ in range(r.randint(1, count)))
                    use += f"\nat {name}{field}, d{unit} {items}"
            use += f"\niend\ndd {name}_i, $ - {name}_i"
        return "\n".join(head + body + tail + [back] * bool(back) + [use])

    def text(self, statements: int) -> str:
        for _ in range(statements):
            self.lines.append(self.statement())
        return "\n".join(self.lines) + "\n"


class MacroProgram:
    """A random program of the preprocessor's: multi-line macros with every
    kind of parameter list (defaults, ``N-*``, greedy ``N+``, ``.nolist``),
    ``%0``, ``%N``, ``%{N}``, ranges ``%{A:B}``, ``%%`` labels, ``%rotate``,
    ``%00`` and labels before calls, ``%[...]``, NASM 2.16's functions
    (``%eval()``, ``%str()`` ...), single-line macros with parameters,
    ``%rep`` with ``%assign``, ``%ifdef``/``%elifdef``, ``%undef``, the
    context stack (``%push``, ``%$name``, ``%$$name``, ``%ifctx``, ``%pop``)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.n = 0
        self.macros: list[tuple[str, int, int, bool]] = []   # name, min, max, greedy
        self.smacros: list[tuple[str, int]] = []             # name, parameters
        self.lines = ["bits 32"]

    def value(self, depth: int = 0) -> str:
        r = self.rng
        k = r.randrange(6)
        if k == 0 and self.smacros:
            # a call, its arguments calls too at times (of the same macro:
            # NASM makes the inner one only inside a macro's body)
            name, params = r.choice(self.smacros)
            args = (self.value(depth + 1) if depth < 2 and r.random() < 0.3
                    else str(r.randrange(100)) for _ in range(params))
            return f"{name}({', '.join(args)})" if params else name
        if k == 1:
            return f"({r.randrange(50)} + {r.randrange(50)})"
        return str(r.randrange(200))

    def macro(self) -> str:
        r = self.rng
        self.n += 1
        name, lo, greedy = f"m{self.n}", r.randint(0, 3), False
        kind = r.randrange(4)
        if kind == 0:
            spec, hi = f"{lo}", lo
        elif kind == 1:
            hi = lo + r.randint(1, 2)
            defaults = r.randint(0, hi - lo)
            spec = f"{lo}-{hi} " + ", ".join(str(r.randrange(9)) for _ in range(defaults))
        elif kind == 2:
            spec, hi = f"{lo}-*", lo + 3
        else:
            lo = max(lo, 1)
            spec, hi, greedy = f"{lo}+", lo, True
        if r.random() < 0.1:
            spec = spec.replace(" ", ".nolist ", 1) if " " in spec else spec + ".nolist"
        body = []
        for _ in range(r.randint(1, 4)):
            b = r.randrange(10)
            if b == 0:
                body.append("db %0")
            elif b == 1 and lo >= 1:
                body.append(f"db %{r.randint(1, lo)}")
            elif b == 2 and "%%here: db ($ - %%here) + 1" not in body:
                body.append("%%here: db ($ - %%here) + 1")
            elif b == 3 and lo >= 1:
                body.append("%if %1 > 50\ndb 'big'\n%else\ndb 'small'\n%endif")
            elif b == 4 and lo >= 1:
                body.append("%rep 2\ndb %{1}\n%endrep")
            elif b == 5:
                body.append(f"dw {self.value()}")
            elif b == 6 and lo >= 2:
                body.append("db %2, %1")
            elif b == 7 and lo >= 1:
                body.append(r.choice(["%rep %0\ndb %1\n%rotate 1\n%endrep",
                                      "%rotate -1\ndb %1", f"%rotate {r.randint(-3, 5)}"]))
            elif b == 8 and "%00" not in "".join(body):
                # the label before the call: passed, and so defined here
                body.append("%ifnempty %00\n%00: db 7\n%else\ndb 8\n%endif")
            elif b == 9 and lo >= 1:
                ends = [r.choice([i, i - lo - 1]) for i in (r.randint(1, lo), r.randint(1, lo))]
                body.append(f"db %{{{ends[0]}:{ends[1]}}}")
            else:
                body.append(f"db {self.value()}")
        # (%rmacro here never calls itself: NASM 2.16.01 drops everything
        # after a call whose macro called itself -- tests/test_language.py)
        word = r.choice(["macro"] * 6 + ["rmacro"])
        self.macros.append((name, lo, hi, greedy))
        return (f"%{word} {name} {spec}\n" + "\n".join(body)
                + f"\n%{r.choice(['endmacro', 'endmacro', 'endm'])}")

    def statement(self) -> str:
        r = self.rng
        k = r.randrange(10)
        self.n += 1
        if k < 2 or (k < 5 and not self.macros):
            return self.macro()
        if k < 5:
            name, lo, hi, greedy = r.choice(self.macros)
            count = r.randint(lo, lo + 2 if greedy else hi)
            call = f"{name} " + ", ".join(self.value() for _ in range(count))
            if r.random() < 0.3:        # a label before it, with or without a colon
                label = f"L{self.n}"
                call = f"{label}{r.choice([':', ''])} {call}\ndd {label}"
            return call
        if k == 5:
            name, params = f"S{self.n}", r.choice([0, 0, 1, 2])
            names = [f"p{i}" for i in range(params)]
            body = " + ".join(names + [str(r.randrange(20))]) if params else self.value()
            if params and self.smacros and r.random() < 0.4:   # a body that calls macros
                callee, n = r.choice(self.smacros)
                inner = [r.choice(names + [self.value(1)]) for _ in range(n)]
                body += f" + {callee}({', '.join(inner)})" if n else f" + {callee}"
            self.smacros.append((name, params))
            return f"%define {name}{'(' + ', '.join(names) + ')' if params else ''} ({body})"
        if k == 6:
            word = r.choice(["assign", "iassign"])
            return (f"%{word} I 0\n%rep {r.randrange(4)}\ndb {r.choice('Ii')}\n"
                    f"%{word} I I + {r.randrange(1, 4)}\n%endrep")
        if k == 7 and self.smacros:
            return (f"%ifdef {r.choice(self.smacros)[0]}\ndb 1\n%elifdef NOPE\ndb 2\n"
                    "%else\ndb 3\n%endif")
        if k == 8 and self.smacros:
            name, _ = self.smacros.pop(r.randrange(len(self.smacros)))
            return f"%undef {name}\n%ifndef {name}\ndb 4\n%endif"
        if k == 9 and r.random() < 0.25:
            return self.functions()
        if k == 9 and r.random() < 0.2:
            i, v = r.randrange(10), self.value()
            return (f"%assign J{self.n} {i}\n%define V{self.n}_%[J{self.n}] {v}\n"
                    f"%define W{self.n} %[V{self.n}_{i}]\ndb V{self.n}_{i}, W{self.n}")
        if k == 9 and r.random() < 0.5:
            ctx, other = f"c{self.n}", r.choice(["x", f"c{self.n}"])
            inner = (f"%push {other}\n%define %$v {self.value()}\ndb %$v, %$$v\n"
                     f"%ifctx {ctx}\ndb 5\n%endif\n%pop\n") if r.random() < 0.5 else ""
            return (f"%push {ctx}\n%assign %$v {self.value()}\n%$l: db %$v\n{inner}"
                    f"%ifnctx {other}\ndb 6\n%endif\ndb $ - %$l\n%pop {ctx}")
        return f"db {self.value()}"

    def functions(self) -> str:
        """NASM 2.16's preprocessor functions, over values, strings and
        names this program has."""
        r = self.rng
        v = self.value
        word = r.choice(["abc", "x y", "'q'", '"a,b"', "5", "", "`a\\x80\\`,b`", '"  x  "',
                         "`\\u00e9`"])
        name = r.choice([n for n, _ in self.smacros] + ["NOPE", "abc"])
        calls = [f"dq %eval({v()})", f"dq %eval({v()}, {v()})", f"dq %abs({v()} - 100)",
                 f"db %num({v()}{', ' + str(r.randint(-1, 6)) if r.random() < 0.6 else ''}"
                 f"{', ' + str(r.choice([2, 8, 10, 16, 36])) if r.random() < 0.5 else ''})",
                 f"db %str({word}), %strlen({word}), 0", f"db %strcat({word}, 'z', {word})",
                 f"db %tok('{r.randrange(9)} + {r.randrange(9)}')",
                 f"db %tok(`'{word.strip(chr(96))}'`), 0" if word.startswith("`") else
                 f"db %str({word}   {word}), 0",
                 f"db %substr({word}, {r.randint(-1, 5)}"
                 f"{', ' + str(r.randint(-3, 4)) if r.random() < 0.6 else ''}), 0",
                 f"db %cond({v()} > 100, {v()}, {v()}), %cond(0, 1)2",
                 f"db %sel({r.randint(1, 3)}, {v()}, {v()}, {v()})",
                 f"db %count({', '.join(v() for _ in range(r.randint(1, 4)))})",
                 f"db %isdef({name}), %isndef({name}), %isnum({word}), %isid({word}), "
                 f"%isstr({word}), %isempty({word}), %istoken({word}), %is({v()} & 1)",
                 f"db %isidn({word}, abc), %isnidni({word}, ABC), %ismacro(m1)"]
        return r.choice(calls)

    def text(self, statements: int) -> str:
        for _ in range(statements):
            self.lines.append(self.statement())
        return "\n".join(self.lines + ["db 0"]) + "\n"


def layout_program(rng: random.Random) -> str:
    """A program of several sections laid out by their attributes -- align=,
    start=, vstart=, follows= (progbits and nobits), nobits -- with labels
    in each, references to them across sections, and each section's
    ``section.NAME.start`` and ``.vstart``."""
    names = [".data", ".rodata", ".bss", "extra", "user"]
    rng.shuffle(names)
    used = [".text", *names[:rng.randint(1, 4)]]
    lines = ["bits 32", f"org {rng.choice([0, 0x1000, 0x7c00])}"]
    labels: list[str] = []
    for i, name in enumerate(used):
        nobits = name == ".bss" or (name in ("extra", "user") and rng.random() < 0.2)
        attrs = ["nobits"] if nobits and name != ".bss" else []
        if name == ".rodata" or (name in ("extra", "user") and not nobits):
            attrs.append("progbits")
        if rng.random() < 0.3:
            attrs.append(f"align={rng.choice([4, 8, 16, 64])}")
        if i and not nobits and rng.random() < 0.25:
            attrs.append(f"start={hex(0x8000 + rng.randrange(0x100, 0x4000, 0x10))}")
        elif i and rng.random() < 0.25:
            attrs.append(f"follows={used[rng.randrange(i)]}")
        if not nobits and rng.random() < 0.15:
            attrs.append(f"vstart={hex(rng.randrange(0x10000, 0x20000, 0x100))}")
        lines.append(" ".join(["section", name, *attrs]))
        for j in range(rng.randint(1, 4)):
            label = f"l{i}_{j}"
            labels.append(label)
            if nobits:
                lines.append(f"{label}: res{rng.choice('bwd')} {rng.randint(1, 9)}")
                continue
            lines.append(f"{label}: db {rng.randint(0, 255)}" + (", 'xy'" if rng.random() < 0.3
                                                                   else ""))
            if rng.random() < 0.5:
                lines.append(f"dd {rng.choice(labels)}, $$, $ - $$")
    lines += ["section .text", "dd " + ", ".join(rng.sample(labels, min(len(labels), 6)))]
    # NASM's symbols of each section: where its bytes are, where its labels count from
    symbols = [f"section.{name}.{which}" for name in used for which in ("start", "vstart")]
    lines.append("dd " + ", ".join(rng.sample(symbols, min(len(symbols), 4))))
    return "\n".join(lines) + "\n"


def program(rng: random.Random) -> str:
    """A data program (half), a preprocessor's or a layout of sections."""
    kind = rng.randrange(6)
    if kind == 4:
        return MacroProgram(rng).text(rng.randint(3, 14))
    if kind == 5:
        return layout_program(rng)
    return Program(rng).text(rng.randint(3, 18))


def _nobits_overlap(message: str, text: str) -> bool:
    """Whether an overlap error names a nobits section (NASM lets those
    overlap others; here it is an error: docs/language.md)."""
    named = re.findall(r"sections '([^']*)' \(.*\) and '([^']*)'", message)
    nobits = {line.split()[1] for line in text.splitlines() if line.startswith("section ")
              and ("nobits" in line.split() or line.split()[1] == ".bss")}
    return bool(named) and bool(set(named[0]) & nobits)


def _rescoped_by_nasms_passes(stderr: str, text: str) -> bool:
    """Whether NASM's only errors are local labels defined before the
    program's first non-local label, "inconsistently redefined": NASM's
    later passes start with the scope its previous pass ended in (the last
    non-local label of the file), its first with none.  Here such a label
    has no scope, as in NASM's first pass (docs/language.md)."""
    errors = [line for line in stderr.splitlines() if "error:" in line]
    before = set()          # the local labels defined before the first non-local one
    for line in text.splitlines():
        word = line.split(":")[0].strip() if ":" in line else ""
        if word.startswith("."):
            before.add(word)
        elif word and " " not in word and word[0].isalpha():
            break
    for error in errors:
        local = re.search(r"label `[^`']*?(\.[A-Za-z_0-9]+)' inconsistently redefined", error)
        if local is None or local.group(1) not in before:
            return False
    return bool(errors)


def flat(image) -> bytes:
    """The image as NASM's bin file: from the lowest byte to the highest."""
    if not image.segments:
        return b""
    lo = min(a for a, _ in image.segments)
    out = bytearray(max(a + len(b) for a, b in image.segments) - lo)
    for a, b in image.segments:
        out[a - lo:a - lo + len(b)] = b
    return bytes(out)


def compare(seed: int, programs: int) -> tuple[collections.Counter, list[str]]:
    """Run ``programs`` random programs through NASM and this assembler:
    (counts by outcome, the reports of those that disagree)."""
    nasm, _ = _tools()
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "p.s"), os.path.join(tmp, "p.bin")
        for name, data in BLOBS.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        for _ in range(programs):
            text = program(rng)
            with open(src, "w") as f:
                f.write(text)
            # (NASM looks for an incbin's file in the directory it runs in --
            # and the -i ones, but not after times; emu next to the program,
            # as for %include)
            try:
                done = subprocess.run([nasm, "-f", "bin", "-o", out, src], cwd=tmp,
                                      capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                counts["NASM refuses or warns"] += 1    # (it did not finish)
                continue
            try:
                mine, refused = flat(assemble(text, src)), None
            except AsmError as e:
                mine, refused = None, str(e)
            if done.returncode and refused is None and "error:" in done.stderr:
                if _rescoped_by_nasms_passes(done.stderr, text):
                    counts["NASM refuses, its passes disagree (documented)"] += 1
                    continue
                counts["NASM refuses, emu assembles"] += 1
                reports.append(f"NASM refuses, emu assembles:\n{done.stderr}\n{text}")
                continue
            if done.returncode or done.stderr:
                counts["NASM refuses or warns"] += 1
                continue
            with open(out, "rb") as f:
                theirs = f.read()
            if refused is not None:
                if any(s in refused for s in STRICTER) or _nobits_overlap(refused, text):
                    counts["stricter here (documented)"] += 1
                    continue
                counts["refused here"] += 1
                reports.append(f"NASM assembles, emu refuses: {refused}\n{text}")
            elif mine != theirs:
                counts["different bytes"] += 1
                reports.append(f"different bytes:\nNASM {theirs.hex()}\nemu  {mine.hex()}\n{text}")
            else:
                counts["same bytes"] += 1
    return counts, reports


# --- memory operands: the address each spelling means ---------------------------------

REGS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")


def address_term(rng: random.Random) -> str:
    k = rng.randrange(8)
    reg = rng.choice(REGS)
    if k < 3:
        return reg
    if k < 5:
        f = rng.choice([1, 2, 4, 8, 3, 5, 9])
        return rng.choice([f"{reg}*{f}", f"{f}*{reg}", f"{reg} * {f}"])
    if k == 5:
        return str(rng.choice([0, 1, 4, 127, 128, 255, 0x7FFFFFFF, 0x80000000]))
    if k == 6:
        return f"({rng.randrange(50)} * {rng.randrange(5)})"
    return hex(rng.randrange(1 << 31))


def address(rng: random.Random) -> str:
    out = address_term(rng)
    for _ in range(rng.randint(0, 3)):
        t = address_term(rng)
        out += f" {'+' if t[0].isalpha() or rng.random() < 0.7 else '-'} {t}"
    if rng.random() < 0.15:     # NASM's hints: the displacement's size, nosplit
        out = " ".join(rng.sample(["byte", "dword", "nosplit"], rng.randint(1, 2))) + " " + out
    return out


def _meaning(text: str) -> tuple:
    """(register -> factor, displacement) of ndisasm's ``[...]``."""
    inside = text[text.index("[") + 1:text.rindex("]")].replace("dword ", "").replace("byte ", "")
    regs: collections.Counter = collections.Counter()
    disp = 0
    for sign, term in re.findall(r"([+-]?)([^+-]+)", inside):
        term = term.strip()
        if "*" in term:
            reg, factor = term.split("*")
            regs[reg] += int(factor, 0)
        elif term in REGS:
            regs[term] += 1
        else:
            disp += -int(term, 0) if sign == "-" else int(term, 0)
    return tuple(sorted(regs.items())), disp & 0xFFFFFFFF


def _our_meaning(mem) -> tuple:
    regs: collections.Counter = collections.Counter()
    if mem.base is not None:
        regs[REGS[mem.base]] += 1
    if mem.index is not None:
        regs[REGS[mem.index]] += mem.scale
    return tuple(sorted(regs.items())), mem.disp & 0xFFFFFFFF


def _tools() -> tuple[str, str]:
    """The paths of nasm and ndisasm (scripts/system-tools installs them)."""
    nasm, ndisasm = shutil.which("nasm"), shutil.which("ndisasm")
    if nasm is None or ndisasm is None:
        raise SystemExit("nasm is not installed (scripts/system-tools installs it)")
    return nasm, ndisasm


def _our_instruction(head: str, text: str, counts: collections.Counter,
                     reports: list[str]):
    """Our decoding of one line NASM took (after ``head``'s lines, at 0), or
    None: a refusal (counted as documented, or reported), or an encoding
    whose length is not the one its layout counted (reported: the label
    after it is where pass 1 put the next line, its bytes where the
    instruction's encoding ended)."""
    try:
        code = assemble(f"{head}_start: {text}\nnext_: dd next_").segments[0][1]
    except AsmError as e:
        if any(m in str(e) for m in STRICTER_ADDRESSES):
            counts["stricter here (documented)"] += 1
        else:
            counts["refused here"] += 1
            reports.append(f"NASM assembles, emu refuses: {text}: {e}")
        return None
    d = isa.decode(code.__getitem__, 0)
    if code[d.length:] != d.length.to_bytes(4, "little"):
        counts["different lengths"] += 1
        reports.append(f"laid out and encoded in different lengths: {text}")
        return None
    return d


def compare_addresses(seed: int, lines: int) -> tuple[collections.Counter, list[str]]:
    """``lea`` of random memory operands: the address NASM encodes (read
    back by ndisasm) against the one this assembler encodes, for every
    line NASM takes without a word."""
    nasm, ndisasm = _tools()
    rng = random.Random(seed)
    texts = [f"lea {rng.choice(REGS)}, [{address(rng)}]" for _ in range(lines)]
    counts: collections.Counter = collections.Counter()
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "m.s"), os.path.join(tmp, "m.bin")
        kept = _nasm_takes(nasm, texts, src, out, head="bits 32")
        listing = subprocess.run([ndisasm, "-b", "32", out], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.splitlines()
    counts["NASM refuses or warns"] = len(texts) - len(kept)
    assert len(listing) == len(kept)
    for text, line in zip(kept, listing, strict=True):
        d = _our_instruction("", text, counts, reports)
        if d is None:
            continue
        mine = _our_meaning(d.args[1])
        theirs = _meaning(line.split(None, 2)[2])
        if mine != theirs:
            counts["different addresses"] += 1
            reports.append(f"different addresses: {text}: NASM {theirs}, emu {mine}")
        else:
            counts["same address"] += 1
    return counts, reports


# --- instructions: each row's spelling means what NASM encodes -----------------------

# ndisasm's names of conditions, and of a few instructions, that are emu's by
# another name (jz is je, setpe is setp, popf is popfd ...).
_CC = {"z": "e", "nz": "ne", "ng": "le", "po": "np", "pe": "p", "nl": "ge", "na": "be",
       "nc": "ae", "c": "b", "nb": "ae", "nae": "b", "nbe": "a", "nge": "l", "nle": "g"}
ALIASES = {f"{p}{k}": f"{p}{v}" for p in ("j", "set", "cmov") for k, v in _CC.items()}
ALIASES.update({"popf": "popfd", "pushf": "pushfd", "iretd": "iret", "pusha": "pushad",
                "popa": "popad", "retn": "ret"})
_IMM_MASK = {"i": 0xFFFFFFFF, "i8": 0xFF, "i16": 0xFFFF}


def instruction(rng: random.Random, isa) -> str:
    """One row of the ISA table (not a string prefix's) with random operands."""
    while True:
        row = rng.choice(isa.TABLE)
        if row.mnemonic.split()[0] not in ("rep", "repe", "repne"):
            break
    ops = []
    for kind in row.operands:
        if kind in ("m", "mb"):
            size = "byte " if kind == "mb" else rng.choice(["dword ", ""])
            ops.append(f"{size}[{address(rng)}]")
        elif kind == "i8":
            ops.append(str(rng.choice([0, 1, 5, 31, 127, 128, 255, rng.randrange(256)])))
        elif kind == "i16":
            ops.append(str(rng.randrange(1 << 16)))
        elif kind == "i":
            ops.append(str(rng.choice([0, 1, 127, 128, -1, -128, 0x7FFFFFFF,
                                       rng.randrange(1 << 32)])))
        else:
            ops.append(rng.choice({"r": REGS, "b": isa.REGS8, "w": ("ax", "cx", "dx", "bx"),
                                   "c": ("cr0", "cr2", "cr3", "cr4"),
                                   "rel": ("here",)}.get(kind, (kind,))))
        if kind in ("i", "i8", "i16", "rel") and rng.random() < 0.1:
            ops[-1] = "strict " + ops[-1]       # NASM's "this size": no other meaning
    mnemonic = "retn" if row.mnemonic == "ret" and rng.random() < 0.3 else row.mnemonic
    return f"{mnemonic} {', '.join(ops)}".strip()


def _ours(d, isa) -> tuple:
    """(mnemonic, operands...) of a decoded instruction of ours."""
    out: list = [d.insn.mnemonic]
    for kind, arg in zip(d.insn.operands, d.args, strict=True):
        if kind == "r":
            out.append(REGS[arg])
        elif kind == "b":
            out.append(isa.REGS8[arg])
        elif kind in ("m", "mb"):
            out.append(_our_meaning(arg))
        elif kind in _IMM_MASK:
            out.append(arg & _IMM_MASK[kind])
        elif kind == "c":
            out.append(f"cr{arg}")
        elif kind == "w":
            out.append(("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")[arg])
        else:
            out.append(kind if kind != "rel" else "rel")
    return tuple(out)


def _theirs(text: str, row) -> tuple:
    """The same of ndisasm's text, read as the row of ours says."""
    name, _, rest = text.partition(" ")
    ops = [o.strip() for o in re.split(r",(?![^\[]*\])", rest)] if rest else []
    if name in ("test", "xchg") and len(ops) == 2 and "[" in ops[0] and \
            row.operands[0] in ("r", "b"):
        ops = ops[::-1]                     # (commutative: NASM puts the memory first)
    if name == "imul" and len(ops) == 3 and ops[0] == ops[1] and len(row.operands) == 2:
        ops = ops[1:]                       # imul r, imm is imul r, r, imm
    out: list = [ALIASES.get(name, name)]
    for kind, op in zip(row.operands, ops):
        plain = re.sub(r"^(byte|word|dword) ", "", op)
        if "[" in op:
            out.append(_meaning(op))
        elif kind == "rel":
            out.append("rel")
        elif kind in _IMM_MASK and re.fullmatch(r"[+-]?(0x)?[0-9a-f]+", plain):
            out.append(int(plain.replace("+", ""), 0) & _IMM_MASK[kind])
        else:
            out.append(plain)
    if len(ops) != len(row.operands):
        out.append(("operands", tuple(ops)))
    return tuple(out)


def compare_instructions(seed: int, lines: int) -> tuple[collections.Counter, list[str]]:
    """Random instructions, a row of the ISA table each: what NASM encodes
    (read back by ndisasm; its listing says which bytes each line made)
    against what is encoded here -- mnemonic, registers, addresses and
    immediates -- for every line NASM takes without a word."""
    nasm, ndisasm = _tools()
    rng = random.Random(seed)
    texts = [instruction(rng, isa) for _ in range(lines)]
    with tempfile.TemporaryDirectory() as tmp:
        src, out, lst = (os.path.join(tmp, n) for n in ("i.s", "i.bin", "i.lst"))
        kept = _nasm_takes(nasm, texts, src, out, head="bits 32\nhere:")
        subprocess.run([nasm, "-f", "bin", "-l", lst, "-o", out, src], check=True, timeout=60)
        starts = []                          # (source line, offset) of each line's bytes
        with open(lst) as f:
            for row in f:
                fields = row.split()
                if (len(fields) >= 3 and fields[0].isdigit() and int(fields[0]) >= 3
                        and re.fullmatch(r"[0-9A-F]{8}", fields[1])
                        and (not starts or starts[-1][0] != int(fields[0]))):
                    starts.append((int(fields[0]), int(fields[1], 16)))
        listing = subprocess.run([ndisasm, "-b", "32", out], capture_output=True, text=True,
                                 timeout=60, check=True).stdout.splitlines()
    at = {int(row[:8], 16): row.split(None, 2)[2] for row in listing if row[:1] != " "}
    bounds = [off for _, off in starts] + [1 << 40]
    counts: collections.Counter = collections.Counter()
    counts["NASM refuses or warns"] = len(texts) - len(kept)
    reports = []
    assert len(starts) == len(kept)
    for i, text in enumerate(kept):
        theirs_text = " ; ".join(t for off, t in sorted(at.items())
                                 if bounds[i] <= off < bounds[i + 1])
        d = _our_instruction("here:\n", text, counts, reports)
        if d is None:
            continue
        mine, theirs = _ours(d, isa), _theirs(theirs_text, d.insn)
        if mine[0] == "xchg" and (mine[1:] == theirs[:0:-1] or (
                mine == ("xchg", "eax", "eax") and theirs_text == "nop")):
            theirs = mine                   # (xchg r, r: either order; x86's nop)
        if mine != theirs:
            counts["different meaning"] += 1
            reports.append(f"different meaning: {text}: NASM {theirs_text} {theirs}, "
                           f"emu {mine}")
        else:
            counts["same meaning"] += 1
    return counts, reports


def _nasm_takes(nasm: str, texts: list[str], src: str, out: str, head: str) -> list[str]:
    """The lines of ``texts`` NASM assembles without a word (after ``head``'s
    lines): NASM warns in its last pass, which an error stops, so the lines
    it names are left out until it names none."""
    kept = texts
    first = head.count("\n") + 2            # the source line of kept[0]
    for _ in range(6):
        with open(src, "w") as f:
            f.write(head + "\n" + "\n".join(kept) + "\n")
        done = subprocess.run([nasm, "-f", "bin", "-o", out, src], capture_output=True,
                              text=True, timeout=60)
        if not done.stderr:
            return kept
        said = {int(line.split(":")[1]) - first for line in done.stderr.splitlines()
                if line.startswith(src + ":")}
        kept = [t for i, t in enumerate(kept) if i not in said]
    raise AssertionError(f"NASM still complains: {done.stderr[:500]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--addresses", type=int, default=1000,
                    help="memory operands (lea) to compare")
    ap.add_argument("--instructions", type=int, default=1000,
                    help="instructions (a row of the ISA table each) to compare")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    counts, reports = compare(args.seed, args.programs)
    for report in reports:
        print(report)
    print(f"{args.programs:,} programs (seed {args.seed}): "
          + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    failed = bool(reports)
    for what, count, run in (("memory operands", args.addresses, compare_addresses),
                             ("instructions", args.instructions, compare_instructions)):
        more, more_reports = run(args.seed, count)
        for report in more_reports:
            print(report)
        print(f"{count:,} {what} (seed {args.seed}): "
              + ", ".join(f"{k} {v:,}" for k, v in sorted(more.items())))
        failed = failed or bool(more_reports)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
