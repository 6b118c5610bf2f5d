"""The 2D walk as a grid: one row per guest-physical address the walk
translated, the nested references (npde, npte) then the guest reference.

    row     npde                     npte                     guest entry
    gcr3    ma 0x00002004 0x00003007 ma 0x00003400 0x00105027 gpde 0x00100023
    gpde    ntlb hit                                          gpte 0x00102027
    data    ma 0x00002004 0x00003007 ma 0x0000300c 0x00000000  -> EPT violation

(2+1)(2+1)-1 = 8 references for a cold walk of a 4 KiB guest page.
"""

from __future__ import annotations


def grid_lines(grid: list, indent: str = "      ", fault: bool = False) -> list[str]:
    """Text lines for a walker's ``grid`` (row, column, ma, value) list."""
    rows: dict[str, dict[str, tuple[int, int]]] = {}
    order: list[str] = []
    for row, col, ma, value in grid:
        row = row or "data"
        if row not in rows:
            rows[row] = {}
            order.append(row)
        rows[row][col] = (ma, value)
    head = f"{indent}{'row':<6} {'npde':<24} {'npte':<24} guest entry"
    out = [head]
    for i, row in enumerate(order):
        cells = rows[row]
        if "ntlb" in cells:
            nested = f"{'ntlb hit':<24} {'':<24}"
        else:
            nested = " ".join(
                f"{_cell(cells[c]) if c in cells else '':<24}" for c in ("npde", "npte"))
        guest = ""
        for c in ("gpde", "gpte"):
            if c in cells:
                guest = f"{c} {cells[c][1]:#010x}"
        last = i == len(order) - 1
        tail = "  -> EPT violation" if fault and last else ""
        out.append(f"{indent}{row:<6} {nested} {guest}{tail}".rstrip())
    refs = sum(1 for _, col, _, _ in grid if col != "ntlb")
    out.append(f"{indent}{refs} table references")
    return out


def _cell(entry: tuple[int, int]) -> str:
    ma, value = entry
    return f"ma {ma:#010x} {value:#010x}"
