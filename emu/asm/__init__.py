"""The assembler: a subset of NASM's language -> an ``Image``; and back to text.

Everything about the instruction set comes from ``emu.isa``.  The language
is NASM's (docs/language.md lists what is supported; every other NASM
construct is refused by name, never misread):

* the preprocessor: %define, %macro, %rep, %if/%ifdef, %assign, %include
  (``preproc``, ``macros``, ``ppconditions``);
* one statement per line: labels (``name:``, or ``name`` before a
  statement; ``.name`` is local to the label above), ``equ``, data and
  reservations, ``times``, ``align``, ``org``, ``section``, ``bits 32``,
  instructions (``parser``, ``operands``);
* expressions with NASM's operators, ``$`` and ``$$``, numbers and
  addresses told apart (``exprparse``, ``expr``, ``values``);
* sections laid out by the rules of NASM's bin format (``sections``);
* two passes: labels may be used before they are defined, except in the
  values that decide the layout (``assembler``, its symbols ``symbols``).

Every problem is an ``AsmError`` naming file:line:column.  A listing
(``listing``) shows each source line beside what it made.
"""

from .assembler import assemble, assemble_file
from .disasm import Line, disassemble, format_line, format_listing
from .image import Image, ListingLine, SourceLine
from .listing import format_listing as source_listing

__all__ = ["Image", "Line", "ListingLine", "SourceLine", "assemble", "assemble_file",
           "disassemble", "format_line", "format_listing", "source_listing"]
