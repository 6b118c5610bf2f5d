"""``emu asm`` and ``emu disasm``: the assembler's and the disassembler's
commands (the parser is ``cli.py``'s)."""

from __future__ import annotations

import os
import sys

from ..cli import load
from ..errors import EmuError
from . import disassemble, format_line, format_listing, source_listing

MAX_BINARY = 1 << 20      # bytes of a raw binary emu disasm reads


def cmd_asm(args) -> int:
    """A listing of the program, or its bytes to a file (``-o``), or an ELF
    file for gdb (``--elf``)."""
    image = load(args.program, listing=not args.output, include=args.include)
    if args.elf:
        from .elf import write_elf
        print(write_elf(image, args.elf, args.program))
    if args.output:
        if not image.segments:
            raise EmuError(f"{args.program}: nothing to write (empty program)")
        lo = image.segments[0][0]
        hi = max(a + len(b) for a, b in image.segments)
        blob = bytearray(hi - lo)
        for a, b in image.segments:
            blob[a - lo:a - lo + len(b)] = b
        try:
            with open(args.output, "wb") as fh:
                fh.write(blob)
        except OSError as e:
            raise EmuError(f"cannot write {args.output}: {e.strerror}") from None
        print(f"{args.output}: {len(blob)} bytes at {lo:#x}, entry {image.entry:#x}")
    elif not args.elf:
        sys.stdout.write(source_listing(image))
    return 0


def cmd_disasm(args) -> int:
    """Disassemble a program, or a raw binary loaded at ``--org``."""
    if args.org is None:
        image = load(args.program, include=args.include)
        sys.stdout.write(format_listing(image))
        return 0
    path = args.program
    if os.path.isdir(path):
        raise EmuError(f"{path}: a directory, not a binary")
    if os.path.exists(path) and not os.path.isfile(path):
        raise EmuError(f"{path}: not a regular file")     # a device or a FIFO may never end
    try:
        with open(path, "rb") as fh:
            blob = fh.read(MAX_BINARY + 1)
    except OSError as e:
        raise EmuError(f"cannot read {path}: {e.strerror}") from None
    if len(blob) > MAX_BINARY:
        raise EmuError(f"{path}: too large to disassemble (more than {MAX_BINARY >> 20} MiB)")
    org = args.org
    if org + len(blob) > 1 << 32:
        raise EmuError(f"{path}: {len(blob):,} bytes at {org:#x} go past the 4 GiB "
                       "address space")

    def read_byte(addr: int) -> int:
        return blob[addr - org]
    for line in disassemble(read_byte, org, org + len(blob)):
        print(format_line(line))
    return 0
