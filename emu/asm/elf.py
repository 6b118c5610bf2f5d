"""An Image as an ELF32 i386 executable, for debuggers (``emu asm --elf``).

The file holds what a debugger needs to know the program: the bytes at
their addresses (one PT_LOAD segment and one section per segment of the
image), the labels and constants (``.symtab``: code labels are functions,
data labels objects, ``equ`` constants absolute), and the source line of
every instruction as a DWARF 3 line-number program (``.debug_line``) with
the one compile unit that points at it (``.debug_info``/``.debug_abbrev``).

The instructions are the project's own encoding, not x86's: a debugger
can show the source line at an address and the labels, but its own
disassembler reads garbage (``monitor disas`` in ``emu gdb`` shows ours).

Layout (little-endian, 32-bit, as the System V ABI's i386 supplement):

    ELF header | program headers | segment bytes (each at an offset that is
    its address mod 4 KiB) | .symtab .strtab .debug_* .shstrtab | section headers
"""

from __future__ import annotations

import os
import struct

from .image import Image

EM_386 = 3
ET_EXEC = 2
PT_LOAD = 1
PF_X, PF_W, PF_R = 1, 2, 4
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
SHN_ABS = 0xFFF1
STB_LOCAL, STB_GLOBAL = 0, 1
STT_NOTYPE, STT_OBJECT, STT_FUNC = 0, 1, 2
PAGE = 0x1000
EHDR = struct.Struct("<16sHHIIIIIHHHHHH")      # the ELF header (52 bytes)
PHDR = struct.Struct("<IIIIIIII")              # a program header (32 bytes)
SHDR = struct.Struct("<IIIIIIIIII")            # a section header (40 bytes)
SYM = struct.Struct("<IIIBBH")                 # a symbol (16 bytes)

# DWARF (version 3)
DW_TAG_compile_unit = 0x11
DW_AT_name, DW_AT_stmt_list, DW_AT_low_pc, DW_AT_high_pc = 0x03, 0x10, 0x11, 0x12
DW_AT_language, DW_AT_comp_dir, DW_AT_producer = 0x13, 0x1B, 0x25
DW_FORM_addr, DW_FORM_data2, DW_FORM_data4, DW_FORM_string = 0x01, 0x05, 0x06, 0x08
DW_LANG_Mips_Assembler = 0x8001            # "assembly language" (the value GNU as uses)
DW_LNS_copy, DW_LNS_advance_pc, DW_LNS_advance_line, DW_LNS_set_file = 1, 2, 3, 4
DW_LNE_end_sequence, DW_LNE_set_address = 1, 2
LINE_BASE, LINE_RANGE, OPCODE_BASE = -5, 14, 13
STANDARD_LENGTHS = bytes([0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1])


def uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


class _Strings:
    """A string table: offsets of NUL-terminated names, the first empty."""

    def __init__(self):
        self.data = bytearray(b"\0")
        self.index: dict[str, int] = {"": 0}

    def add(self, name: str) -> int:
        off = self.index.get(name)
        if off is None:
            off = self.index[name] = len(self.data)
            self.data += name.encode("utf-8", "replace") + b"\0"
        return off


def _section_names(image: Image) -> list[str]:
    by_load = {s.load: s.name for s in image.sections if not s.nobits}
    names = []
    for i, (addr, _) in enumerate(image.segments):
        name = by_load.get(addr) or (".text" if i == 0 else f".seg{i}")
        names.append(name if name.startswith(".") else "." + name)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):       # one name, one section
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[i] = f"{name}.{seen[name] - 1}"
    return names


def _symbols(image: Image, sections: list[tuple[int, int]]):
    """(name, value, size, info, shndx) of every label and constant, locals
    first (the order ELF asks for)."""
    code = set(image.lines)
    labels = sorted(image.labels.items(), key=lambda kv: (kv[1], kv[0]))
    starts = sorted({a for n, a in labels if "." not in n})

    def shndx(addr: int) -> int:
        for i, (lo, size) in enumerate(sections):
            if lo <= addr < lo + size or (addr == lo + size and size == 0):
                return i + 1
        return SHN_ABS

    def size_of(name: str, addr: int) -> int:
        idx = shndx(addr)
        if idx == SHN_ABS:
            return 0
        lo, size = sections[idx - 1]
        later = [a for a in starts if a > addr] + [lo + size]
        return min(later) - addr

    local, glob = [], []
    for name, addr in labels:
        kind = STT_FUNC if addr in code else STT_OBJECT
        if "." in name:           # a local label: part of the one above
            local.append((name, addr, 0, (STB_LOCAL << 4) | STT_NOTYPE, shndx(addr)))
        else:
            glob.append((name, addr, size_of(name, addr), (STB_GLOBAL << 4) | kind,
                         shndx(addr)))
    for name, value in sorted(image.constants.items()):
        local.append((name, value & 0xFFFFFFFF, 0, (STB_LOCAL << 4) | STT_NOTYPE, SHN_ABS))
    return local, glob


def _line_program(image: Image, segments) -> tuple[bytes, list[str]]:
    """The .debug_line unit: one sequence per segment holding code."""
    files: list[str] = []
    fileno: dict[str, int] = {}
    rows_by_seg = []
    for addr, data in segments:
        rows = sorted((a, s) for a, s in image.lines.items() if addr <= a < addr + len(data))
        if rows:
            rows_by_seg.append((addr + len(data), rows))
            for _, src in rows:
                if src.file not in fileno:
                    files.append(src.file)
                    fileno[src.file] = len(files)
    prog = bytearray()
    for end, rows in rows_by_seg:
        first = rows[0][0]
        prog += b"\0" + uleb(5) + bytes([DW_LNE_set_address]) + struct.pack("<I", first)
        pc, line, file = first, 1, 1
        for a, src in rows:
            if fileno[src.file] != file:
                file = fileno[src.file]
                prog += bytes([DW_LNS_set_file]) + uleb(file)
            if a != pc:
                prog += bytes([DW_LNS_advance_pc]) + uleb(a - pc)
                pc = a
            if src.line != line:
                prog += bytes([DW_LNS_advance_line]) + sleb(src.line - line)
                line = src.line
            prog.append(DW_LNS_copy)
        if end > pc:
            prog += bytes([DW_LNS_advance_pc]) + uleb(end - pc)
        prog += b"\0" + uleb(1) + bytes([DW_LNE_end_sequence])
    header = bytearray([1, 1, LINE_BASE & 0xFF, LINE_RANGE, OPCODE_BASE]) + STANDARD_LENGTHS
    header += b"\0"                                     # no include directories
    for name in files:
        header += name.encode("utf-8", "replace") + b"\0" + uleb(0) + uleb(0) + uleb(0)
    header += b"\0"
    body = struct.pack("<H", 3) + struct.pack("<I", len(header)) + header + prog
    return struct.pack("<I", len(body)) + body, files


def _debug_info(image: Image, comp_dir: str, low: int, high: int) -> tuple[bytes, bytes]:
    abbrev = (uleb(1) + uleb(DW_TAG_compile_unit) + b"\0"
              + uleb(DW_AT_name) + uleb(DW_FORM_string)
              + uleb(DW_AT_comp_dir) + uleb(DW_FORM_string)
              + uleb(DW_AT_producer) + uleb(DW_FORM_string)
              + uleb(DW_AT_language) + uleb(DW_FORM_data2)
              + uleb(DW_AT_stmt_list) + uleb(DW_FORM_data4)
              + uleb(DW_AT_low_pc) + uleb(DW_FORM_addr)
              + uleb(DW_AT_high_pc) + uleb(DW_FORM_addr)
              + b"\0\0" + b"\0")
    die = (uleb(1) + image.source_name.encode("utf-8", "replace") + b"\0"
           + comp_dir.encode("utf-8", "replace") + b"\0" + b"emu asm\0"
           + struct.pack("<HIII", DW_LANG_Mips_Assembler, 0, low, high))
    body = struct.pack("<HIB", 3, 0, 4) + die + b"\0"
    return struct.pack("<I", len(body)) + body, abbrev


def elf_bytes(image: Image, comp_dir: str | None = None) -> bytes:
    """The ELF32 i386 executable of ``image`` (see the module doc)."""
    comp_dir = comp_dir or os.getcwd()
    segments = [(a, bytes(d)) for a, d in image.segments if d]
    names = _section_names(image) if segments else []
    phoff = EHDR.size
    offset = phoff + PHDR.size * len(segments)
    placed = []
    for addr, data in segments:
        offset += (addr - offset) % PAGE      # offset = address (mod the page size)
        placed.append(offset)
        offset += len(data)
    sections = [(addr, len(data)) for addr, data in segments]
    local, glob = _symbols(image, sections)
    strtab = _Strings()
    symtab = bytearray(SYM.size)              # symbol 0: the null symbol
    for name, value, size, info, shndx in local + glob:
        symtab += SYM.pack(strtab.add(name), value, size, info, 0, shndx)
    code = sorted(image.lines)
    low = code[0] if code else 0
    high = max((a + len(d) for a, d in segments if any(a <= c < a + len(d) for c in code)),
               default=low)
    line, _ = _line_program(image, segments)
    info, abbrev = _debug_info(image, comp_dir, low, high)
    shstr = _Strings()
    extra = [(".symtab", SHT_SYMTAB, bytes(symtab)), (".strtab", SHT_STRTAB, bytes(strtab.data)),
             (".debug_abbrev", SHT_PROGBITS, abbrev), (".debug_info", SHT_PROGBITS, info),
             (".debug_line", SHT_PROGBITS, line)]
    for name in names:
        shstr.add(name)
    for name, _, _ in extra:
        shstr.add(name)
    shstr.add(".shstrtab")
    extra.append((".shstrtab", SHT_STRTAB, bytes(shstr.data)))
    blob = bytearray(offset)
    for (_, data), off in zip(segments, placed):
        blob[off:off + len(data)] = data
    extra_offsets = []
    for _, _, data in extra:
        extra_offsets.append(len(blob))
        blob += data
    blob += b"\0" * (-len(blob) % 4)
    shoff = len(blob)
    nsec = 1 + len(segments) + len(extra)
    strtab_index = 1 + len(segments) + 1
    headers = bytearray(SHDR.size)           # section 0: the null section
    for name, (addr, data), off in zip(names, segments, placed):
        headers += SHDR.pack(shstr.index[name], SHT_PROGBITS,
                             SHF_ALLOC | SHF_WRITE | SHF_EXECINSTR, addr, off, len(data),
                             0, 0, 16, 0)
    for (name, kind, data), off in zip(extra, extra_offsets):
        link = info_field = entsize = 0
        align = 1
        if kind == SHT_SYMTAB:
            link, info_field, entsize, align = strtab_index, 1 + len(local), SYM.size, 4
        headers += SHDR.pack(shstr.index[name], kind, 0, 0, off, len(data), link, info_field,
                             align, entsize)
    blob += headers
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)   # 32-bit, little-endian, SysV
    EHDR.pack_into(blob, 0, ident, ET_EXEC, EM_386, 1, image.entry, phoff if segments else 0,
                   shoff, 0, EHDR.size, PHDR.size, len(segments), SHDR.size, nsec, nsec - 1)
    for i, ((addr, data), off) in enumerate(zip(segments, placed)):
        PHDR.pack_into(blob, phoff + i * PHDR.size, PT_LOAD, off, addr, addr, len(data),
                       len(data), PF_R | PF_W | PF_X, PAGE)
    return bytes(blob)


def write_elf(image: Image, path: str, program: str = "") -> str:
    """Write ``elf_bytes(image)`` to ``path``; returns the line to print."""
    from ..errors import EmuError
    if not image.segments:
        raise EmuError(f"{program or image.source_name}: nothing to write (empty program)")
    data = elf_bytes(image)
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as e:
        raise EmuError(f"cannot write {path}: {e.strerror}") from None
    return (f"{path}: ELF32 i386, {len(image.segments)} segment"
            f"{'s' if len(image.segments) != 1 else ''}, {len(image.labels)} labels, "
            f"{len(image.lines)} source lines, entry {image.entry:#x}")


__all__ = ["EM_386", "elf_bytes", "write_elf"]
