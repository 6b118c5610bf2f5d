"""The assembler: Intel-syntax source text -> an ``Image``; and back to text.

Everything about the instruction set comes from ``emu.isa``.  The language:

* one statement per line, ``;`` starts a comment; labels ``name:`` (local
  labels ``.name`` belong to the last non-local label and are stored as
  ``outer.name``); ``NAME equ EXPR`` constants;
* directives ``org``, ``align N [, FILL]``, ``db``/``dw``/``dd``,
  ``times N ...`` and ``%include "file"`` (see ``parser``);
* expressions with C operators and precedence, ``$`` and ``$$`` (see ``expr``);
* operands: registers, expressions, ``[base + index*scale + disp]`` with an
  optional ``byte``/``dword`` size (see ``operands``);
* two passes: labels may be used before they are defined, except in the
  values that decide the layout (``org``, ``align``, ``times``), which may
  only use what is defined above them (see ``assembler``).

Every problem is an ``AsmError`` naming file:line:column.
"""

from .assembler import assemble, assemble_file
from .disasm import Line, disassemble, format_line, format_listing
from .image import Image

__all__ = ["Image", "Line", "assemble", "assemble_file", "disassemble",
           "format_line", "format_listing"]
