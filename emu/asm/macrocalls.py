"""Multi-line macros and the context stack, for the preprocessor
(``Preprocessor`` takes this mixin): defining a macro, recognising a call,
expanding it -- its lines take the call's parameters as they are read, so
``%rotate`` reaches the lines after it --, ``%ifmacro``/``%unmacro``, and
NASM's context stack (``%push``, ``%pop``, ``%repl``, ``%$name``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from .directives import after_word, is_name, param_count
from .expr import signed64
from .lexer import Loc, clip
from .macros import Macro, expand_body_line, scan, split_args, strip_comment
from .parser import KEYWORDS as _KEYWORDS
from .parser import RESERVED

# Words a line may begin with that are not labels: before a macro's name,
# an instruction's operand (``push m``), not a label as NASM takes it.
KEYWORDS = _KEYWORDS | RESERVED

MAX_MACRO_DEPTH = 64        # macro calls and %rep blocks inside each other
Chain = tuple[tuple[str, str], ...]   # (real path, name) of a file and those including it


class ExitMacro(Exception):
    """%exitmacro: leave the innermost macro's expansion."""


@dataclass
class _Call:
    """A macro call being expanded: its parameters (``%rotate`` turns them),
    how many, and the number that makes its ``%%`` labels its own."""

    args: list[str]
    count: int
    unique: int
    names: tuple[str, str] = ("", "")   # the macro's name as called, as defined
    label: str = ""                     # %00: the label before the call


def read_body_line(loc: Loc) -> Loc:
    """A line of a macro's body with the parameters its call has now."""
    call = loc.call
    assert isinstance(call, _Call)
    return replace(loc, text=expand_body_line(loc.text, call.args, call.count, call.unique,
                                              loc, call.names, call.label), call=None)


def context_of(what: str, at: Loc) -> tuple[str, ...]:
    return (f"{what} at {at.file}:{at.line}", *at.context)


# The directives that define a multi-line macro (%rmacro: one that may call
# itself; i: any case).
MACRO_WORDS = ("macro", "imacro", "rmacro", "irmacro")
_SLOT = {"byte": 4, "word": 4, "dword": 4, "qword": 8}   # %arg/%local: bytes each takes


class MacroCalls:
    """The preprocessor's macros and contexts (a part of ``Preprocessor``)."""

    # --- the context stack -------------------------------------------------------
    def _in_context(self, loc: Loc) -> Loc:
        """The line with each ``%$name`` made the name local to the context
        on top of the stack (``%$$name``: the one under it, and so on)."""
        out, pos = [], 0
        text = loc.text
        for start, end, kind in scan(text):
            piece = text[start:end]
            if kind != "macro-ref" or not piece.startswith("%$"):
                continue
            name = piece.lstrip("%$")
            depth = len(piece) - len(name) - 1
            if not name:
                raise loc.error(f"'{clip(piece)}' needs a name after it", start + 1)
            if depth > len(self.contexts):
                raise loc.error(f"'{clip(piece)}': " + ("the context stack is empty (%push "
                                "makes one)" if not self.contexts else
                                f"the context stack is only {len(self.contexts)} deep"),
                                start + 1)
            out += [text[pos:start], f"..@{self.contexts[-depth][1]}.{name}"]
            pos = end
        return replace(loc, text="".join(out) + text[pos:]) if out else loc

    def _context_line(self, word: str, rest: str, col: int, loc: Loc) -> None:
        """``%push NAME``, ``%pop [NAME]``, ``%repl NAME``."""
        names = strip_comment(rest).split()
        if len(names) > 1 or (names and not is_name(names[0])):
            raise loc.error(f"%{word} takes one context name", col)
        name = names[0] if names else None
        if word == "push":
            self.unique += 1
            self.contexts.append((name or "", self.unique))
            return
        if not self.contexts:
            raise loc.error(f"%{word}: the context stack is empty", col)
        top = self.contexts[-1][0]
        if word == "repl":
            if name is None:
                raise loc.error("%repl needs the context's new name", col)
            self.contexts[-1] = (name, self.contexts[-1][1])
        elif name is not None and name != top:
            raise loc.error(f"%pop {name}: the context on top is '{clip(top)}'", col)
        else:
            self.contexts.pop()

    # --- %stacksize, %arg, %local ------------------------------------------------------
    def _frame_line(self, word: str, rest: str, col: int, loc: Loc) -> None:
        """NASM's names for a stack frame's places: ``%stacksize flat``
        starts one (arguments from ebp+8, locals below ebp); ``%arg a:dword,
        b:word`` makes ``a`` the text ``(ebp+8)``, ``b`` ``(ebp+12)`` -- each
        item in a slot of 4 bytes, or 8 --; ``%local x:dword`` makes ``x``
        ``(ebp-4)`` and adds its slot to the context's ``%$localsize``."""
        text = strip_comment(rest).strip()
        if word == "stacksize":
            if text != "flat":
                raise loc.error(f"%stacksize {clip(text) or '(nothing)'} is not supported "
                                "(only flat: the machine runs 32-bit code)", col)
            self.frame = [8, 0]
            return
        if self.frame is None:
            raise loc.error(f"%{word} needs '%stacksize flat' before it (NASM's offsets "
                            "without it depend on its passes)", col)
        for item in (t.strip() for t in text.split(",")):
            name, _, kind = item.partition(":")
            size = _SLOT.get(kind.strip().lower())
            if not is_name(name.strip()) or size is None:
                raise loc.error(f"%{word} takes NAME:SIZE items, SIZE one of byte, word, "
                                f"dword, qword (not '{clip(item)}')", col)
            if word == "arg":
                self.defines.define(name.strip(), f"(ebp+{self.frame[0]})")
                self.frame[0] += size
                continue
            if not self.contexts:
                raise loc.error("%local needs a context (%push) for its %$localsize", col)
            key = f"..@{self.contexts[-1][1]}.localsize"
            if self.defines.get(key) is None:
                raise loc.error("%local adds to %$localsize: write '%assign %$localsize 0' "
                                "first", col)
            self.frame[1] += size
            self.defines.define(name.strip(), f"(ebp-{self.frame[1]})")
            # (as NASM does it: %assign %$localsize %$localsize+SIZE)
            self._directive_line("assign", 1, replace(loc, text=f"%assign {key} {key}+{size}"))

    def _macros_named(self, text: str, col: int, loc: Loc, word: str,
                      ) -> tuple[str, tuple[int, int | None, bool] | None]:
        """The name and the parameter count (None: none given) of
        ``%ifmacro NAME [COUNT]`` and ``%unmacro NAME COUNT``."""
        parts = text.split()
        if not parts or not is_name(parts[0]) or len(parts) > 2:
            what = "and a parameter count" if "unmacro" in word else \
                "(and a parameter count, or none)"
            raise loc.error(f"%{word} needs a macro name {what}", col)
        return parts[0], (param_count(parts[1], loc, col) if len(parts) > 1 else None)

    def _is_macro(self, text: str, col: int, loc: Loc, word: str) -> bool:
        """``%ifmacro NAME [N | N-M | N-*]``: a multi-line macro NAME (of
        %macro, or of %imacro in any case) whose parameter count (a greedy
        ``N+`` counting as N, as NASM has it) meets that range (any count
        without one) is defined."""
        name, count = self._macros_named(text, col, loc, word)
        lo, hi = (0, None) if count is None else count[:2]
        for m in self.macros.get(name, []) + self.imacros.get(name.lower(), []):
            if (hi is None or m.lo <= hi) and (m.hi is None or m.hi >= lo):   # (N+: N, here)
                return True
        return False

    def _unmacro(self, text: str, col: int, loc: Loc, word: str) -> None:
        """``%unmacro NAME COUNT``: the macro of that name and exactly that
        parameter count is no more."""
        name, count = self._macros_named(text, col, loc, word)
        if count is None:
            raise loc.error(f"%{word} needs a macro name and a parameter count", col)
        table, key = self._table(word, name)
        left = [m for m in table.get(key, []) if (m.lo, m.hi, m.greedy) != count]
        if left:
            table[key] = left
        else:
            table.pop(key, None)

    def _rotate(self, loc: Loc, col: int, call: object) -> None:
        """``%rotate N``: the parameters of the macro call this line belongs
        to turn N places to the left (right for a negative N): %1 is then
        what %(N+1) was."""
        _, rest_col = after_word(loc.text, col, "rotate")
        if not isinstance(call, _Call):
            raise loc.error("%rotate outside a macro", col)
        n = signed64(self._value(loc, rest_col, "a %rotate count"))
        if not call.args:
            raise loc.error("%rotate in a macro called without parameters", col)
        n %= len(call.args)
        call.args[:] = call.args[n:] + call.args[:n]

    # --- %macro ------------------------------------------------------------------
    def _define_macro(self, loc: Loc, col: int, word: str, it: Iterator[Loc],
                      depth: int) -> None:
        rest, rest_col = after_word(loc.text, col, word)
        parts = strip_comment(rest).split(None, 2)
        if not parts or not is_name(parts[0]):
            raise loc.error(f"%{word} needs a name", rest_col)
        name = parts[0]
        lo, hi, greedy = param_count(parts[1] if len(parts) > 1 else "0", loc, rest_col)
        defaults = tuple(split_args(parts[2])) if len(parts) > 2 else ()
        body = self._collect(it, loc, depth, MACRO_WORDS, ("endmacro", "endm"))
        # (a macro defined by a macro's lines: %1 ... in its body are its own
        # call's, as in NASM, not the outer call's)
        body = tuple(replace(b, call=None) if b.call is not None else b for b in body)
        macro = Macro(name, lo, hi, greedy, defaults, body, loc, "rmacro" in word)
        table, key = self._table(word, name)
        table[key] = [m for m in table.get(key, []) if (m.lo, m.hi) != (lo, hi)] + [macro]

    def _table(self, word: str, name: str) -> tuple[dict[str, list[Macro]], str]:
        """The table a macro of ``%word`` (%macro, %unmacro; %imacro,
        %unimacro) is in, and its key there."""
        if word.startswith(("imacro", "irmacro", "unimacro")):
            return self.imacros, name.lower()
        return self.macros, name

    def _macro_call(self, text: str) -> tuple[str, str, int, str] | None:
        """(the label before it or "", name, column, argument text) when
        ``text`` calls a multi-line macro.  The label is a name and a colon
        or, as in NASM, a name alone that is not a mnemonic, a directive or
        a register (``push m`` stays an instruction)."""
        if not self.macros and not self.imacros:
            return None
        pieces = scan(text)
        label = ""
        for start, end, kind in pieces:
            if kind == "other" and text[start] in " \t":
                continue
            if kind != "id":
                return None
            name = text[start:end]
            if name in self.macros or name.lower() in self.imacros:
                return label, name, start + 1, text[end:]
            if label:
                return None
            label = name
            if end < len(text) and text[end] == ":":
                next(pieces)                    # the ':'
            elif name.lower() in KEYWORDS:
                return None
        return None

    def _callee(self, call: Loc, name: str, col: int, args_text: str) -> Macro | None:
        """The macro a call of ``name`` with these arguments expands; None
        when that macro is being expanded and is not an %rmacro: as in
        NASM, the line is then not a call of it (nor of itself through
        another macro)."""
        candidates = self.macros.get(name, []) + self.imacros.get(name.lower(), [])
        n = len(split_args(args_text))
        macro = next((m for m in candidates if m.takes(n)), None)
        if macro is None:
            shapes = " or ".join(m.shape() for m in candidates)
            raise call.error(f"macro '{clip(name)}' takes {shapes} parameters, not {n}", col)
        if not macro.recursive and any(m is macro for m in self.expanding):
            return None
        return macro

    def _expand(self, call: Loc, macro: Macro, name: str, col: int, args_text: str,
                chain: Chain, depth: int, label: str = "") -> Iterator[Loc]:
        """The lines of a call of ``macro`` (called ``name``); ``label``, the
        label before the call, is defined before them unless the macro reads
        it (``%00``)."""
        args = split_args(args_text)
        if depth >= MAX_MACRO_DEPTH:
            raise call.error(f"macros nested too deeply (limit {MAX_MACRO_DEPTH}): does "
                             f"'{clip(name)}' call itself without end?", col)
        if macro.greedy:
            keep = max(macro.lo, macro.hi or macro.lo)
            if len(args) > keep and keep > 0:
                args = split_args(args_text, keep - 1)
        count = len(args)
        top = macro.hi if macro.hi is not None else count
        if count < top and macro.defaults:
            extra = macro.defaults[max(count - macro.lo, 0):top - macro.lo]
            args = [*args, *extra]
            count = len(args)
        takes_label = macro.takes_label
        if label and not takes_label:
            yield replace(call, text=label + ":")
        self.unique += 1
        state = _Call(list(args), count, self.unique, (name, macro.name),
                      label if takes_label else "")
        context = context_of(f"macro '{name}' called", call)
        # Its lines take their parameters when they are read (``_block``), so
        # that a %rotate is seen by the lines after it, in a %rep too.
        lines = (replace(b, context=context, call=state) for b in macro.body)
        self.expanding.append(macro)
        try:
            yield from self._block(lines, chain, depth + 1)
        except ExitMacro:
            pass
        finally:
            self.expanding.pop()

