"""``emu isa``: the instruction set as a student reads it, from ``isa.TABLE``.

Every mnemonic with its forms in NASM's notation, the flags it sets, the
flags the Intel SDM leaves undefined, and its cost in cycles.  The same text
is ``docs/isa.md`` (``emu isa --markdown`` writes that file's contents; a
test keeps the two equal).
"""

from __future__ import annotations

from . import isa

FLAG_WORDS = ("CF carry, PF parity (of the low byte), AF adjust (carry out of bit 3), "
              "ZF zero, SF sign, OF overflow, DF direction, IF interrupt enable")
_WHEN = {isa.COUNT_NOT_1: "unless the count is 1",
         isa.COUNT_GE_WIDTH: "when the count is at least the operand's width"}
_ALIASES: dict[str, list[str]] = {}
for _alias, _name in sorted(isa.ALIASES.items()):
    _ALIASES.setdefault(_name, []).append(_alias)


def _cycles(rows: list[isa.Insn]) -> str:
    values = sorted({row.cycles for row in rows})
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"


def _flags(rows: list[isa.Insn]) -> list[str]:
    row = rows[0]
    lines = [f"sets {' '.join(row.sets)}" if row.sets else "sets none"]
    if row.undefined:
        lines.append(f"undefined {' '.join(row.undefined)}")
    for flag, cond in row.undefined_when:
        lines.append(f"undefined {flag} {_WHEN[cond]}")
    if row.mnemonic in isa.COUNTED:
        lines.append("a count of 0 changes no flag")
    return lines


def render() -> str:
    """The whole text of ``emu isa``."""
    mnemonics = sorted(isa.FORMS)
    out = [
        f"The instruction set: {len(isa.TABLE)} forms of {len(mnemonics)} mnemonics "
        "(NASM notation; r/m32 stands for a register or a dword of memory).",
        "",
        f"Flags: {FLAG_WORDS}.",
        "'sets': given a defined value.  'undefined': the Intel SDM leaves it undefined",
        "(docs/DECISIONS.md says what this machine does there).  Flags not named are kept.",
        "Cycles: the base cost; each memory reference adds the cost model's mem_ref.",
        "",
    ]
    for mn in mnemonics:
        rows = isa.FORMS[mn]
        out.append(f"{mn} -- {rows[0].doc}")
        for text, form_rows in isa.nasm_form_rows(rows):
            n = _cycles(form_rows)
            out.append(f"    {(mn + ' ' + text).rstrip():<34} {n} cycle{'' if n == '1' else 's'}")
        for line in _flags(rows):
            out.append(f"    flags: {line}")
        if _ALIASES.get(mn):
            out.append(f"    also written: {', '.join(_ALIASES[mn])}")
        if rows[0].kind == isa.PRIV:
            out.append("    privileged: #GP(0) at CPL 3")
        reasons = sorted({row.differs for row in rows if row.differs})
        for reason in reasons:
            out.append(f"    not as on x86: {reason}")
        out.append("")
    return "\n".join(out)


def markdown() -> str:
    """The contents of docs/isa.md."""
    return ("# The instruction set\n\n"
            "Generated from the ISA table (`emu/isa.py`) by `emu isa --markdown`; "
            "`tests/test_isadoc.py` keeps this file equal to what `emu isa` prints.\n\n"
            "```text\n" + render() + "```\n")


def add_parser(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help="list the instructions, their forms, flags and cost")
    p.add_argument("--markdown", action="store_true",
                   help="print docs/isa.md (the same text, as Markdown)")


def main(args) -> int:
    print(markdown() if args.markdown else render(), end="")
    return 0
