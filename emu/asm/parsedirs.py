"""The parser's directive statements (a part of ``Parser``): data and
``?``, ``incbin``, ``section``, ``sectalign``, ``bits``, ``cpu`` and
``global``."""

from __future__ import annotations

from .expr import Node, Num
from .exprparse import parse_expr
from .lexer import Cursor, Token, clip
from .source import find_include, read_binary
from .stmts import Data, Reserve, SectAlign, SectionDecl

# NASM's CPU levels (``cpu NAME``), as the generation each stands for: 3 is
# the 386 (isa.CPU_LEVEL says which rows need more); every later name takes
# every row.  The 16-bit ones are refused: the machine runs 32-bit code.
CPU_NAMES = {"386": 3, "486": 4, "586": 5, "pentium": 5,
             **dict.fromkeys(("686", "ppro", "p2", "p6", "p3", "katmai", "p4", "willamette",
                              "prescott", "x64", "x86-64", "ia64", "nehalem", "westmere",
                              "sandybridge", "ivybridge", "default", "any", "all"), 9)}

class DirectiveStatements:
    """The statements of ``Parser`` that directives make (a mixin: it uses
    the parser's ``known``, ``include_dirs`` and ``cpu``)."""

    def _bits(self, cur: Cursor, tok: Token, word: str) -> None:
        if word == "bits":
            mode = cur.peek()
            if mode is None or mode.kind != "num":
                raise cur.error_here("expected 16, 32 or 64 after 'bits'")
            cur.pos += 1
            if mode.value != 32:
                raise cur.loc.error(f"'bits {mode.value}' is not supported (the machine runs "
                                    "32-bit code: write 'bits 32')", tok.col)

    def _cpu(self, cur: Cursor, tok: Token) -> None:
        """``cpu NAME``: from here, instructions of a later x86 than NAME
        are refused, as NASM refuses them."""
        words = []
        while not cur.at_end():
            words.append(cur.next().text)
        name = "".join(words).lower()
        if name in ("8086", "186", "286"):
            raise cur.loc.error(f"'cpu {name}' is not supported (the machine runs 32-bit "
                                "code: 386 or later)", tok.col)
        if name not in CPU_NAMES:
            raise cur.loc.error(f"unknown CPU level '{clip(name)}' (386, 486, 586, 686, p2, "
                                "p3, p4, x64 ...)", tok.col)
        self.cpu = CPU_NAMES[name]

    def _sectalign(self, cur: Cursor, tok: Token) -> SectAlign | None:
        """``sectalign N``: the section's alignment raised to N, as ``align
        N`` raises it; ``sectalign off`` / ``on``: from here, ``align`` and
        ``alignb`` leave the alignment of their section as it is (or raise
        it again), in every section -- NASM's meaning."""
        word = cur.peek()
        if word is not None and word.kind == "ident" and word.text.lower() in ("on", "off"):
            cur.pos += 1
            self.sectalign = word.text.lower() == "on"
            return None
        if cur.at_end():
            raise cur.error_here("expected a boundary, 'on' or 'off' after 'sectalign'")
        return SectAlign(cur.loc, tok.col, parse_expr(cur))

    def _names(self, cur: Cursor, tok: Token) -> None:
        while True:
            name = cur.next()
            if name.kind != "ident":
                raise cur.loc.error(f"expected a symbol name after '{tok.text}'", name.col)
            if not cur.at_op(","):
                return
            cur.pos += 1

    def _section(self, cur: Cursor, tok: Token) -> SectionDecl:
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "ident":
            raise cur.error_here(f"expected a section name after '{tok.text}'")
        cur.pos += 1
        attrs: dict[str, tuple[Node | str | bool, int]] = {}
        while not cur.at_end():
            a = cur.next()
            key = a.text.lower() if a.kind == "ident" else ""
            if key in ("progbits", "nobits"):
                attrs["nobits"] = (key == "nobits", a.col)
                continue
            if key in ("valign", "vfollows"):
                raise cur.loc.error(f"section attribute '{a.text}' is not supported "
                                    "(start=, vstart=, align=, follows=, progbits, nobits)",
                                    a.col)
            if key not in ("start", "vstart", "align", "follows") or not cur.at_op("="):
                raise cur.loc.error(f"unknown section attribute '{clip(a.text)}' (start=, "
                                    "vstart=, align=, follows=, progbits, nobits)", a.col)
            cur.pos += 1
            if key == "follows":
                target = cur.next()
                if target.kind != "ident":
                    raise cur.loc.error("expected a section name after 'follows='",
                                        target.col)
                attrs[key] = (target.text, target.col)
            else:
                value_tok = cur.peek()
                attrs[key] = (parse_expr(cur), value_tok.col if value_tok else a.col)
        return SectionDecl(cur.loc, name_tok.col, name_tok.text, attrs)

    def _incbin(self, cur: Cursor, tok: Token) -> Data:
        """``incbin "FILE" [, SKIP [, COUNT]]``: the file's bytes from SKIP,
        COUNT of them at most, as data.  FILE is looked for as ``%include``
        looks; SKIP and COUNT are numbers known before assembly."""
        loc = cur.loc
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "str":
            raise cur.error_here("expected a file name in quotes after incbin")
        cur.pos += 1
        name = name_tok.value.decode("utf-8", "replace")  # type: ignore[union-attr]
        numbers = []
        while cur.at_op(",") and len(numbers) < 2:
            cur.pos += 1
            what = "incbin's " + ("count" if numbers else "skip")
            at = cur.peek()
            col = at.col if at is not None else tok.col
            value = self.known(parse_expr(cur), loc, col, what)
            if value < 0:
                raise loc.error(f"{what} must not be negative, not {value}", col)
            numbers.append(value)
        if not cur.at_end():
            raise cur.error_here("expected end of line (incbin takes a file name, a skip "
                                 "and a count)")
        path, searched = find_include(name, loc.file, self.include_dirs)
        if not path:
            where = ", ".join(searched) if searched else "absolute path"
            raise loc.error(f"incbin file '{clip(name)}' not found (searched: {where})",
                            name_tok.col)
        skip = numbers[0] if numbers else 0
        count = numbers[1] if len(numbers) > 1 else None
        data = read_binary(path, skip, count, path, loc, name_tok.col)
        return Data(loc, tok.col, 1, [data] if data else [], len(data))

    def _data(self, cur: Cursor, tok: Token, width: int) -> Data | Reserve:
        """``db``/``dw``/``dd``/``dq``: values and strings; ``?``, as in
        NASM, is an item left uninitialised (zeros; items all ``?`` reserve
        space, as ``resX`` does, so they may go in a nobits section)."""
        items: list[Node | bytes | None] = []
        if cur.at_end():
            raise cur.loc.error(f"'{clip(tok.text)}' needs at least one value", tok.col)
        while True:
            item = cur.peek()
            after = cur.peek(1)
            if item is not None and item.kind == "str" and (after is None or after.is_op(",")):
                cur.pos += 1
                items.append(item.value)  # type: ignore[arg-type]
            elif item is not None and item.kind == "ident" and item.text == "?" and (
                    after is None or after.is_op(",")):
                cur.pos += 1
                items.append(None)
            else:
                items.append(parse_expr(cur))
            if not cur.at_op(","):
                break
            cur.pos += 1
        if all(it is None for it in items):
            return Reserve(cur.loc, tok.col, width, Num(len(items), tok.col))
        size = sum(-(-len(it) // width) * width if isinstance(it, bytes) else width
                   for it in items)
        return Data(cur.loc, tok.col, width, items, size)
