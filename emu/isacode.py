"""Encoding, decoding and formatting of the instructions of ``isa.TABLE``.

Encoding (little-endian, variable length)::

    opcode                         page 1: 1 byte, the row's index
                                   page 2: 0xFE, then the row's index in page 2
    register byte                  when the form has registers / control regs:
                                   first operand's number << 4 | second's
    memory operand                 when the form has one:
        M   1 byte  bit 7 has base, bits 6-4 base, bit 3 has index, 2-0 index
        S   1 byte  log2(scale), only when M has an index
        disp32      4 bytes, signed
    immediates, in operand order   imm32: 4 bytes, imm16: 2, imm8: 1
    rel32                          4 bytes, signed, relative to the next insn

Use it through ``emu.isa``, which re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import isa

_IMM_SIZE = {"i": 4, "rel": 4, "i16": 2, "i8": 1}


def operand_size(kind: str) -> int:
    """Encoded size of an operand kind, memory operands excluded."""
    return _IMM_SIZE.get(kind, 0)


@dataclass(frozen=True)
class Mem:
    """A decoded memory operand: base + index*scale + disp."""

    base: int | None
    index: int | None
    scale: int
    disp: int
    byte: bool = False


@dataclass(frozen=True)
class Decoded:
    """One decoded instruction: its row, its operand values and its length."""

    insn: isa.Insn
    args: tuple  # per operand: int (register number / immediate) or Mem
    length: int


class DecodeError(Exception):
    """The bytes are not an instruction (the CPU raises #UD)."""


def encode(insn: isa.Insn, args: tuple) -> bytes:
    """Encode ``insn`` with operand values ``args`` (see the module doc).

    ``rel`` operands are given already relative to the next instruction.
    """
    out = bytearray(insn.code)
    regs = [a for k, a in zip(insn.operands, args) if k in isa.REG_KINDS]
    if regs:
        hi = regs[0]
        lo = regs[1] if len(regs) > 1 else 0
        out.append((hi << 4) | lo)
    for k, a in zip(insn.operands, args):
        if k in isa.MEM_KINDS:
            out += encode_mem(a)
    for k, a in zip(insn.operands, args):
        size = _IMM_SIZE.get(k)
        if size:
            out += (a & ((1 << 8 * size) - 1)).to_bytes(size, "little")
    return bytes(out)


def encode_mem(m: Mem) -> bytes:
    b = 0
    if m.base is not None:
        b |= 0x80 | (m.base << 4)
    out = bytearray()
    if m.index is not None:
        b |= 0x08 | m.index
        out.append(b)
        out.append({1: 0, 2: 1, 4: 2, 8: 3}[m.scale])
    else:
        out.append(b)
    out += (m.disp & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(out)


def length_of(insn: isa.Insn, index_flags: tuple[bool, ...] = ()) -> int:
    """Length of an encoding of ``insn``; ``index_flags`` says, per memory
    operand, whether it has an index register."""
    n = len(insn.code)
    if any(k in isa.REG_KINDS for k in insn.operands):
        n += 1
    mi = 0
    for k in insn.operands:
        if k in isa.MEM_KINDS:
            has_index = index_flags[mi] if mi < len(index_flags) else False
            n += 6 if has_index else 5
            mi += 1
        n += operand_size(k)
    return n


def decode(fetch, eip: int) -> Decoded:
    """Decode the instruction at ``eip``; ``fetch(addr)`` returns one byte."""
    opcode = fetch(eip)
    pos = eip + 1
    if opcode == isa.ESCAPE:
        opcode = isa.ESCAPE << 8 | fetch(pos)
        pos += 1
    insn = isa.BY_OPCODE.get(opcode)
    if insn is None:
        raise DecodeError(f"invalid opcode {opcode:#04x}")
    reg_vals: list[int] = []
    if any(k in isa.REG_KINDS for k in insn.operands):
        rb = fetch(pos)
        pos += 1
        reg_vals = [rb >> 4, rb & 0xF]
    args: list = []
    ri = 0
    for k in insn.operands:
        if k in isa.REG_KINDS:
            v = reg_vals[ri]
            ri += 1
            if (k == "c" and v not in isa.CREG_NAMES) or (k != "c" and v > 7):
                raise DecodeError(f"bad register number {v}")
            args.append(v)
        elif k in isa.MEM_KINDS:
            mb = fetch(pos)
            pos += 1
            if mb & 0x80 == 0 and mb & 0x70:
                raise DecodeError("bad memory operand")
            base = (mb >> 4) & 7 if mb & 0x80 else None
            index = None
            scale = 1
            if mb & 0x08:
                index = mb & 7
                sb = fetch(pos)
                pos += 1
                if sb > 3:
                    raise DecodeError("bad scale")
                scale = 1 << sb
            elif mb & 0x07:
                raise DecodeError("bad memory operand")
            disp = _imm(fetch, pos, 4)
            pos += 4
            if disp & 0x80000000:
                disp -= 1 << 32
            args.append(Mem(base, index, scale, disp, k == "mb"))
        else:
            args.append(None)  # filled below, in encoding order
    for i, k in enumerate(insn.operands):
        size = _IMM_SIZE.get(k)
        if size:
            v = _imm(fetch, pos, size)
            pos += size
            if k == "rel" and v & 0x80000000:
                v -= 1 << 32
            args[i] = v
        elif k == "cl":
            args[i] = isa.ECX
        elif k == "dx":
            args[i] = isa.EDX
        elif k == "al":
            args[i] = isa.EAX
    return Decoded(insn, tuple(args), pos - eip)


def _imm(fetch, pos: int, size: int) -> int:
    v = 0
    for i in range(size):
        v |= fetch(pos + i) << (8 * i)
    return v


def format_operand(kind: str, value, symbol_of=None, next_eip: int = 0) -> str:
    """Intel-syntax text of one operand; ``symbol_of(addr)`` names addresses."""
    if kind == "r":
        return isa.REGS32[value]
    if kind == "b":
        return isa.REGS8[value]
    if kind == "w":
        return isa.REGS16[value]
    if kind == "c":
        return isa.CREG_NAMES[value]
    if kind in isa.IMPLICIT_KINDS:
        return kind
    if kind == "rel":
        target = (next_eip + value) & 0xFFFFFFFF
        name = symbol_of(target) if symbol_of else None
        return name if name else f"{target:#x}"
    if kind in ("i", "i8", "i16"):
        # Only addresses-looking immediates are named: 0 or 1 rarely mean a label.
        name = symbol_of(value) if symbol_of and kind == "i" and value >= 0x100 else None
        return name if name else (f"{value:#x}" if value > 9 else str(value))
    m: Mem = value
    parts = []
    if m.base is not None:
        parts.append(isa.REGS32[m.base])
    if m.index is not None:
        # (an index with no base is written with its factor, *1 too: read
        # back, [eax*1] is that encoding, and [eax] another)
        parts.append(isa.REGS32[m.index] + (f"*{m.scale}" if m.scale != 1 or m.base is None
                                            else ""))
    if m.disp or not parts:
        if parts:
            parts.append(f"- {-m.disp:#x}" if m.disp < 0 else f"+ {m.disp:#x}")
            text = " ".join([" + ".join(parts[:-1]), parts[-1]])
        else:
            d = m.disp & 0xFFFFFFFF
            name = symbol_of(d) if symbol_of else None
            text = name if name else f"{d:#x}"
    else:
        text = " + ".join(parts)
    return ("byte " if m.byte else "") + f"[{text}]"


def format_insn(d: Decoded, eip: int, symbol_of=None) -> str:
    """NASM-syntax text that assembles back to the same row: a dword memory
    operand is written ``dword [...]`` where the form alone would not say
    its size (``mov dword [eax], 5``)."""
    sized = d.insn.key in SIZE_SHOWN
    ops = ", ".join(("dword " if sized and k == "m" else "")
                    + format_operand(k, a, symbol_of, eip + d.length)
                    for k, a in zip(d.insn.operands, d.args))
    return f"{d.insn.mnemonic} {ops}".rstrip()


# --- NASM notation (emu isa, the assembler's messages) --------------------
def notation(row: isa.Insn, i: int) -> str:
    """NASM's name of operand ``i``'s kind (``r/m`` merging aside)."""
    kind = row.operands[i]
    if kind == "m" and row.mnemonic in isa.UNSIZED_MEMORY:
        return "m"
    return isa.NOTATION[kind]


def nasm_forms(rows: list[isa.Insn]) -> list[str]:
    """The forms of ``rows`` (one mnemonic's) as NASM writes them, a register
    and a memory form of the same position merged into ``r/m32``/``r/m8``:
    ``add r/m32, r32``.  In table order, without repeats."""
    return [text for text, _ in nasm_form_rows(rows)]


def nasm_form_rows(rows: list[isa.Insn]) -> list[tuple[str, list[isa.Insn]]]:
    """``nasm_forms`` with the rows each form stands for."""
    index = {row.operands: row for row in rows}
    out: dict[str, list[isa.Insn]] = {}
    covered: set[tuple[str, ...]] = set()
    for row in rows:
        texts = [notation(row, i) for i in range(len(row.operands))]
        for i, kind in enumerate(row.operands):
            reg = {"m": "r", "mb": "b"}.get(kind)
            twin = row.operands[:i] + (reg,) + row.operands[i + 1:] if reg else None
            if twin in index and row.mnemonic not in isa.UNSIZED_MEMORY:
                merged = list(texts)
                merged[i] = "r/m32" if kind == "m" else "r/m8"
                covered |= {row.operands, twin}
                out.setdefault(", ".join(merged), [index[twin], row])
    for row in rows:
        if row.operands not in covered:
            out[", ".join(notation(row, i) for i in range(len(row.operands)))] = [row]
    return list(out.items())


def _sized(rows: list[isa.Insn]) -> frozenset[tuple[str, tuple[str, ...]]]:
    """Keys of the rows whose dword memory operand must be written ``dword``:
    written unsized, forms of both sizes would fit (``mov dword [eax], 5``)."""
    loose = {"r": ("r",), "b": ("b",), "cl": ("b", "cl"), "al": ("b", "al"),
             "dx": ("dx", "w"), "w": ("w",), "c": ("c",),
             **{k: ("i", "i8", "i16", "rel") for k in ("i", "i8", "i16", "rel")}}
    out = set()
    for row in rows:
        for i, k in enumerate(row.operands):
            if k != "m" or row.mnemonic in isa.UNSIZED_MEMORY:
                continue
            kinds = [("m", "mb") if j == i else loose.get(kk, (kk,))
                     for j, kk in enumerate(row.operands)]
            sizes = {r.operands[i] for r in isa.FORMS[row.mnemonic]
                     if len(r.operands) == len(kinds)
                     and all(a in ok for a, ok in zip(r.operands, kinds))}
            if len(sizes) > 1:
                out.add(row.key)
    return frozenset(out)


SIZE_SHOWN = _sized(list(isa.TABLE))
