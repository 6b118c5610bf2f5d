"""Sections and where they go: the rules of NASM's ``bin`` format.

A program is a set of sections; code before any ``section`` line is in
``.text``.  Each section collects its bytes in the order they come in the
source, wherever its lines are.  After pass 1 every section's size is
known and ``place`` gives each an address:

* ``.text`` (the first section) starts at the ``org`` address (0 without
  one), or at its own ``start=``;
* a section with ``start=ADDR`` starts there; one with ``follows=NAME`` is
  moved, with the sections defined after it as NASM groups them (see
  ``_follows``), to just after section NAME; sections with ``start=`` are
  ordered by address, each with the sections defined after it;
* every other progbits section starts after the one before it in that
  order, aligned to its ``align=`` (default 4; ``sectalign N`` or ``align N``
  inside a section raises it to N, unless a ``sectalign off`` came before
  the ``align``);
* nobits sections (``.bss``, or ``nobits``) hold no bytes: ``.bss`` follows
  the last progbits section, any other follows the section defined just
  before it, each aligned the same way; ``start=`` places one anywhere,
  ``follows=NAME`` just after section NAME (where NASM may let it overlap
  the sections after NAME: here that is the overlap error);
* ``vstart=ADDR``: the section is loaded at its start but its labels (and
  ``$``, ``$$``) are addresses from ADDR, for code that runs somewhere else
  than where it is loaded.

No two sections may overlap where they are loaded (NASM lets nobits
sections overlap; here that is an error too), no section may start below
the origin, and nothing may lie beyond 0xffffffff.

Each section has NASM's two symbols, ``section.NAME.start`` and
``section.NAME.vstart`` (``section_symbol``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .lexer import Loc, clip

ADDRESS_END = 1 << 32       # first address past the 32-bit space
DEFAULT_ALIGN = 4


@dataclass(eq=False)
class Section:
    """One section: its attributes, its size, then its place."""

    name: str
    nobits: bool
    defined_at: Loc                 # the first 'section' line (line 0: the implicit .text)
    prev: Section | None            # the section defined just before it
    start: int | None = None        # start=
    vstart: int | None = None       # vstart=
    align: int | None = None        # align=, raised by align directives
    follows: str | None = None      # follows=
    size: int = 0                   # bytes so far (pass 1)
    load: int = 0                   # where its bytes go (set by place)
    base: int = 0                   # the address of its first byte for labels and $$
    data: bytearray = field(default_factory=bytearray)

    def raise_align(self, n: int) -> None:
        if self.align is None or n > self.align:
            self.align = n


def declare(sections: list[Section], stmt, critical) -> Section:
    """The section a ``section`` line names, made or found, with its
    attributes applied; ``critical(node, what)`` evaluates a value that
    decides the layout."""
    sec = next((s for s in sections if s.name == stmt.name), None)
    nobits_attr = stmt.attrs.get("nobits")
    if sec is None:
        nobits = nobits_attr[0] if nobits_attr else stmt.name == ".bss"
        sec = Section(stmt.name, bool(nobits), stmt.loc,
                      None if stmt.name == ".bss" else sections[-1])
        sections.append(sec)
    elif nobits_attr and nobits_attr[0] != sec.nobits:
        raise stmt.loc.error(f"section '{clip(sec.name)}' was "
                             f"{'nobits' if sec.nobits else 'progbits'}: its type cannot "
                             "change", nobits_attr[1])
    for key in ("start", "vstart", "align"):
        if key not in stmt.attrs:
            continue
        node, col = stmt.attrs[key]
        value = critical(node, f"section attribute {key}=")
        if not 0 <= value < ADDRESS_END:
            raise stmt.loc.error(f"{key}={value:#x} out of range (0..0xffffffff)", col)
        if key == "align":
            if value <= 0 or value & (value - 1):
                raise stmt.loc.error(f"align={value} is not a power of two", col)
            sec.raise_align(value)
        elif getattr(sec, key) not in (None, value):
            raise stmt.loc.error(f"section '{clip(sec.name)}': {key}= redefined", col)
        else:
            setattr(sec, key, value)
    if "follows" in stmt.attrs:
        target, col = stmt.attrs["follows"]
        if sec.follows not in (None, target):
            raise stmt.loc.error(f"section '{clip(sec.name)}': follows= redefined", col)
        sec.follows = target  # type: ignore[assignment]
    if sec.start is not None and sec.follows is not None:
        raise stmt.loc.error("start= and follows= cannot both be given", stmt.col)
    if sec.start is not None and sec.align and sec.start % sec.align and \
            "align" in stmt.attrs:
        raise stmt.loc.error(f"start={sec.start:#x} is not a multiple of "
                             f"align={sec.align}", stmt.attrs["align"][1])
    return sec


def _up(value: int, align: int) -> int:
    return -(-value // align) * align


def place(sections: list[Section], origin: int | None) -> None:
    """Give every section its load address and base (see the module doc);
    ``sections`` are in order of definition, ``.text`` first."""
    _no_loop(sections)
    progbits = [s for s in sections if not s.nobits]
    order = _follows(progbits)
    order = _by_start(order)
    first = order[0]
    if origin is not None:
        if first.start is not None and first.start < origin:
            raise _at(first).error(f"section '{clip(first.name)}' starts at "
                                   f"{first.start:#x}, below the origin {origin:#x}")
        if first.start is None:
            first.start = _up(origin, first.align) if first.align else origin
    elif first.start is None:
        first.start = 0
    low = first.start if origin is None else origin
    end = first.start
    for s in order:
        if s.start is None:
            s.start = _up(end, s.align or DEFAULT_ALIGN)
        if s.start < low:
            raise _at(s).error(f"section '{clip(s.name)}' starts at {s.start:#x}, below "
                               f"the origin {low:#x}")
        s.load = s.start
        s.base = s.vstart if s.vstart is not None else s.start
        if s.start >= end:
            end = s.start + s.size
    last = order[-1]
    by_name = {s.name: s for s in sections}
    placed: set[str] = set()

    def place_nobits(s: Section) -> None:       # (no loop: _no_loop said so)
        if s.name in placed:
            return
        if s.start is None and s.vstart is None:
            if s.follows is not None:           # right after the section it names
                after = by_name.get(s.follows)
                if after is None:
                    raise _at(s).error(f"section '{clip(s.name)}' follows unknown section "
                                       f"'{clip(s.follows)}'")
            else:
                after = last if s.prev is None or s.name == ".bss" else s.prev
            if after.nobits:
                place_nobits(after)
            s.start = _up(after.base + after.size, s.align or DEFAULT_ALIGN)
        s.load = s.base = s.start if s.start is not None else s.vstart  # type: ignore[assignment]
        placed.add(s.name)

    for s in sections:
        if s.nobits:
            place_nobits(s)
    _check(sections)


def _no_loop(sections: list[Section]) -> None:
    """No section follows= itself, nor sections that come back to it (a
    loop of follows= places nothing), progbits or nobits."""
    by_name = {t.name: t for t in sections}
    for s in sections:
        chain = [s]
        while chain[-1].follows is not None and chain[-1].follows in by_name:
            chain.append(by_name[chain[-1].follows])
            if chain[-1] is s and len(chain) == 2:
                raise _at(s).error(f"section '{clip(s.name)}' follows itself")
            if chain[-1] is s:
                raise _at(s).error("sections follow one another in a loop: " + " follows ".join(
                    f"'{clip(t.name)}'" for t in chain))
            if chain[-1] in chain[:-1]:
                break                   # (a loop without s: said from one of its own)


def _follows(order: list[Section]) -> list[Section]:
    """Move each follows= group after the section it names."""
    order = list(order)
    by_name = {t.name: t for t in order}
    # NASM's order (its bin format's): the first section with follows= that
    # is not already just after the section it names leads a group, moved
    # there; the group is that section and the ones after it, up to the
    # section it follows, one with start=, or -- included -- the section
    # just before another one with follows= (the section right after the
    # leader is always in it, whatever its attributes but start=).  Then
    # the scan goes on from where the group was.
    i = 0
    for _ in range(len(order) ** 2 + 1):   # (each pass moves a group on: a bound, not a limit)
        if i >= len(order):
            break
        if order[i].follows is None:
            while i + 1 < len(order) and (order[i + 1].follows is None
                                          or order[i + 1].follows == order[i].name):
                i += 1
            if i + 1 >= len(order):
                break
            i += 1
        lead = order[i]
        target = by_name.get(lead.follows)  # type: ignore[arg-type]
        if target is None:
            raise _at(lead).error(f"section '{clip(lead.name)}' follows unknown section "
                                  f"'{clip(lead.follows)}' (or a nobits one)")
        t = order.index(target)
        if t + 1 < len(order) and order[t + 1] is not lead and \
                order[t + 1].follows == target.name:
            raise _at(lead).error(f"sections '{clip(order[t + 1].name)}' and "
                                  f"'{clip(lead.name)}' cannot both follow "
                                  f"'{clip(target.name)}'")
        j = i + 1
        while j < len(order) and order[j] is not target and order[j].start is None:
            j += 1
            if j < len(order) and order[j].follows is not None and \
                    order[j].follows != order[j - 1].name:
                break
        group, after = order[i:j], (order[j] if j < len(order) else None)
        del order[i:j]
        k = order.index(target) + 1
        order[k:k] = group
        if after is None:
            break
        i = order.index(after)
    return order


def _by_start(order: list[Section]) -> list[Section]:
    """Groups led by a section with start=, sorted by that address."""
    groups: list[list[Section]] = []
    for s in order:
        if not groups or s.start is not None:
            groups.append([s])
        else:
            groups[-1].append(s)
    head = [] if groups[0][0].start is not None else groups.pop(0)
    groups.sort(key=lambda g: g[0].start)      # stable: equal starts keep their order
    return head + [s for g in groups for s in g]


def _check(sections: list[Section]) -> None:
    spans = sorted(((s.load, s.load + s.size, s) for s in sections if s.size),
                   key=lambda span: span[:2])
    for s in sections:
        if s.load + s.size > ADDRESS_END or s.base + s.size > ADDRESS_END:
            raise _at(s).error(f"section '{clip(s.name)}' goes past address 0xffffffff")
    for (lo1, hi1, a), (lo2, hi2, b) in zip(spans, spans[1:], strict=False):
        if lo2 < hi1:
            later = b if b.defined_at.line > 0 else a
            raise later.defined_at.error(
                f"sections '{clip(a.name)}' ({lo1:#x}..{hi1 - 1:#x}) and '{clip(b.name)}' "
                f"({lo2:#x}..{hi2 - 1:#x}) overlap")


def _at(s: Section) -> Loc:
    return s.defined_at


def section_symbol(sections: list[Section], name: str) -> tuple[Section, bool] | None:
    """NASM's symbols of a section: ``section.NAME.start`` (where its bytes
    are loaded) and ``section.NAME.vstart`` (the address of its first byte
    for labels: the start, unless ``vstart=`` moves it), as (the section,
    vstart); None for any other name or a section not (yet) declared.  The
    assembler looks them up where a label is not found: they are not
    labels, and no listing or disassembly names an address by them."""
    if not name.startswith("section.") or not name.endswith("start"):
        return None
    head, _, which = name.rpartition(".")
    if which not in ("start", "vstart"):
        return None
    sec = next((s for s in sections if s.name == head[len("section."):]), None)
    return None if sec is None else (sec, which == "vstart")


def in_section(found: tuple[Section, bool]) -> bool:
    """A section symbol is an address of its section (its first byte: a
    difference with a label of it is a number) -- but a ``vstart=``
    section's start, which is where its bytes are, a number."""
    sec, vstart = found
    return vstart or sec.vstart is None
