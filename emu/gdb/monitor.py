"""``monitor`` commands (GDB's ``qRcmd``): the emulator's own views as text.

    walk VA          the guest's walk of VA, the shadow (or nested) entries
                     beside it and the PMap: how VA is translated, each step
    tlb              every TLB set and way
    pmap             the PMap: guest-physical -> machine pages
    stats            the counters so far
    mode             the mode, the policy, paging, where the run is
    disas [ADDR] [N] the project's disassembly (GDB's x86 one cannot read it)
    last-write va|pa|ma ADDR   who last changed the dword at ADDR
    help             this list
"""

from __future__ import annotations

import io
import re
import textwrap

from rich.console import Console

from ..asm import disassemble, format_line
from ..errors import EmuError
from ..hw.paging import PTE_P, decode_flags
from ..ui import views
from ..ui.commands import address_value
from ..ui.probe import Probe

WIDTH = 100
# (the list as the module doc shows it: Python 3.13 strips a docstring's
# indentation, earlier versions keep it)
HELP = textwrap.indent(textwrap.dedent(__doc__.split("\n\n", 1)[1]).rstrip(), "    ") + "\n"


def _text(*renderables) -> str:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, color_system=None, force_terminal=False,
                      highlight=False, emoji=False)
    for r in renderables:
        console.print(r)
    return out.getvalue()


def _number(session, text: str) -> int:
    return address_value(text, session.image.symbols, session.registers())


def run(session, line: str) -> str:
    """The output of ``monitor LINE``."""
    words = line.split()
    if not words:
        return HELP
    cmd, args = words[0].lower(), words[1:]
    if cmd == "help":
        return HELP
    if cmd == "walk":
        if not args:
            raise EmuError("usage: monitor walk VA")
        return walk(session, _number(session, " ".join(args)))
    if cmd == "tlb":
        return _text(views.tlb_view(session))
    if cmd == "pmap":
        return _text(views.pmap_view(session))
    if cmd == "stats":
        return _text(views.stats_view(session))
    if cmd == "mode":
        return mode(session)
    if cmd == "disas":
        return disas(session, args)
    if cmd in ("last-write", "lw"):
        if len(args) < 2 or args[0] not in ("va", "pa", "ma"):
            raise EmuError("usage: monitor last-write va|pa|ma ADDR")
        return session.last_write(args[0], _number(session, " ".join(args[1:]))) + "\n"
    raise EmuError(f"unknown monitor command '{cmd}' ('monitor help' lists them)")


def walk(session, va: int) -> str:
    """How ``va`` is translated now: the guest's walk, the shadow or nested
    entries, the PMap and the TLB."""
    s = session.system
    p = Probe(s)
    parts = [views.pt_view(session, va)]
    nested = getattr(s.vmm, "nested", None) if s.vmm is not None else None
    if nested is not None and hasattr(nested, "tables"):
        parts.append(nested_walk(session, va))
    elif s.vmm is not None:
        parts.append(views.spt_view(session, va))
    if s.vmm is not None:
        pa = p.va_to_pa(va)
        if pa is not None:
            ppn = pa >> 12
            state = s.vmm.pmap.state(ppn) if hasattr(s.vmm.pmap, "state") else "?"
            mpn = s.vmm.pmap.mpn_of.get(ppn)
            to = f"mpn {mpn:#x}" if mpn is not None else "no machine page"
            parts.append(f"PMap: ppn {ppn:#x} -> {to} ({state})")
    hits = []
    mmu = s.mmu
    for t in {id(mmu.itlb): mmu.itlb, id(mmu.dtlb): mmu.dtlb}.values():
        for e in t.valid_entries():
            span = 1024 if e.large else 1
            if e.vpn <= va >> 12 < e.vpn + span:
                if e.gpn is None:
                    to = f"pn {e.pn:#x}"
                elif e.page is None and not e.large:          # (Mmu.detach_pn)
                    to = f"ppn {e.gpn:#x}, page taken by the host"
                else:                                          # (Mmu.reattach, shared)
                    to = f"pn {e.pn:#x}, shared: reads only"
                hits.append(f"{t.name}: va {e.vpn << 12:#010x} -> {to} "
                            f"({'W' if e.writable else 'r'}{'U' if e.user else 's'}"
                            f"{'D' if e.dirty else ''})")
    parts.append("TLB: " + ("; ".join(hits) if hits else "no entry for this page"))
    return _text(*parts)


def nested_walk(session, va: int) -> str:
    """The second dimension of a nested walk of ``va``: each guest-physical
    address the guest's walk reads (its pde, its pte) and the one it finds,
    through the VMM's nested table (npde, npte) to a machine address."""
    s = session.system
    p = Probe(s)
    nested = s.vmm.nested
    steps = []
    w = p.walk(va)
    if w is None:
        steps.append(("data", va & 0xFFFFFFFF))        # guest paging off: pa = va
    else:
        steps += [(lv.name, lv.entry_pa) for lv in w.levels]
        if not w.fault:
            steps.append(("data", w.pa))
    lines = [f"va {va:#010x}: the nested walk of each guest-physical address "
             f"(nested root mpn {nested.root:#x})"]
    shown = None
    for what, pa in steps:
        ppn, pdx = pa >> 12, pa >> 22
        npde = p.machine_table(nested.root)[pdx]
        pt = nested.tables.get(pdx)
        if pdx != shown:
            lines.append(f"  npde[{pdx:#05x}] = {npde:#010x}  [{decode_flags(npde, pde=True)}]"
                         if npde & PTE_P else f"  npde[{pdx:#05x}] = {npde:#010x}  [np]")
            shown = pdx
        name = f"{what} @ pa" if what != "data" else "data @ pa"
        if not npde & PTE_P or pt is None:
            lines.append(f"    {name} {pa:#010x}: nested page fault (an EPT violation)")
            continue
        npte = p.machine_table(pt)[ppn & 0x3FF]
        entry = f"    {name} {pa:#010x}: npte[{ppn & 0x3FF:#05x}] = {npte:#010x}"
        if not npte & PTE_P:
            lines.append(f"{entry}  [np]: nested page fault (an EPT violation)")
            continue
        ma = (npte & ~0xFFF) | (pa & 0xFFF)
        lines.append(f"{entry}  [{decode_flags(npte)}] -> ma {ma:#010x}")
    if w is not None and w.fault:
        lines.append(f"  the guest's walk faults first: #PF, error code {w.error_code:#x}")
    return "\n".join(lines)


def mode(session) -> str:
    s = session.system
    cpu = s.cpu
    c = s.config
    lines = [f"mode {c.mode}" + (f" ({c.shadow_policy})" if c.mode == "shadow" else "")
             + (f", VMM {c.vmm}" if getattr(c, "vmm", None) else ""),
             f"guest paging {'on' if cpu.cr0 & 0x80000000 else 'off'}: CR0 {cpu.cr0:#010x} "
             f"CR3 {cpu.cr3:#010x} CR4 {cpu.cr4:#010x}, cpl {cpu.cpl}"]
    if c.mode == "shadow":
        lines.append(f"hardware CR3 (the shadow root) {s.mmu.cr3:#010x}")
    elif c.mode == "nested":
        lines.append("the hardware walks the guest's table and the nested table (2D)")
    lines.append(f"{cpu.icount:,} instructions, cycle {int(s.env.now):,}"
                 + (f", the run is over: {s.outcome} ({s.message})" if s.outcome else ""))
    st = session.recorder.store
    lines.append(f"{len(st)} snapshots, {st.size / 2**20:.1f} MiB (budget "
                 f"{st.budget / 2**20:.0f} MiB)")
    return "\n".join(lines) + "\n"


def disas(session, args: list[str]) -> str:
    count = 10
    if len(args) >= 2 and re.fullmatch(r"\d+", args[-1]):
        count = int(args.pop())
    start = _number(session, " ".join(args)) if args else session.system.cpu.eip
    count = max(1, min(count, 200))
    data = Probe(session.system).read_va(start, count * 16)
    if data is None:
        data = b""
        p = Probe(session.system)
        for i in range(count * 16):
            b = p.read_va(start + i, 1)
            if b is None:
                break
            data += b
    if not data:
        raise EmuError(f"va {start:#010x} is not mapped")
    lines = disassemble(lambda a: data[a - start], start, start + len(data),
                        session.image.labels, session.image.data_lengths(),
                        session.system.cpu.eip)[:count]
    out = []
    for line in lines:
        label = line.label or session.image.symbol_at(line.addr)
        if label:
            out.append(f"{label}:")
        out.append(format_line(line))
    return "\n".join(out) + "\n"
