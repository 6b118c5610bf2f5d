"""The stepper's views: TLB, guest page table, shadow table, PMap, memory,
statistics, trace.  Each returns a renderable built from the machine as it
is (read through ``Probe``: looking changes nothing).
"""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..errors import EmuError
from ..hw.paging import PTE_P, PTE_W, decode_flags
from .probe import Probe, fold
from .story import describe

MAX_ROWS = 48          # rows of a folded table before "... more"


def _table(*columns: str) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for c in columns:
        t.add_column(c, no_wrap=True)
    return t


def _head(text: str) -> Text:
    return Text(text, style="bold")


def _note(text: str) -> Text:
    return Text(text, style="italic")


def _more(rows: list, limit: int, what: str) -> tuple[list, Text | None]:
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], _note(f"... {len(rows) - limit} more {what}")


# --- TLB ----------------------------------------------------------------------------
def _tlb_cell(e) -> str:
    rights = ("W" if e.writable else "r") + ("U" if e.user else "s") + \
        ("D" if e.dirty else "-") + ("G" if e.global_ else "")
    if getattr(e, "gpn", None) is not None and e.page is None:
        return f"{e.vpn:05x}→ppn {e.gpn:05x}, page taken {rights}"   # (Mmu.detach_pn)
    return f"{e.vpn:05x}→{e.pn:05x} {rights}"


def tlb_view(session) -> Group:
    s = session.system
    filled: dict[int, set] = {}
    for _, ev, _ in session.shown_events(session.shown_before):
        if ev.kind == "tlb_fill":
            filled.setdefault(ev.va >> 12, set()).add(bool(ev.data.get("fetch")))
    tlbs = [s.itlb] if s.itlb is s.dtlb else [s.itlb, s.dtlb]
    parts = []
    for tlb in tlbs:
        st = tlb.stats()
        valid = len(tlb.valid_entries())
        fetch = None if s.itlb is s.dtlb else tlb is s.itlb
        parts.append(_head(f"{tlb.name}: {valid} of {tlb.entries + tlb.large_entries} "
                           f"entries valid · {st['lookups']:,} lookups, {st['hits']:,} hits, "
                           f"{st['misses']:,} misses · {tlb.ways}-way, {tlb.policy}"))
        t = _table("set", *(f"way {w}" for w in range(tlb.ways)))
        for i, ways in enumerate(tlb.sets):
            if tlb.nsets > 32 and not ways:
                continue
            cells = []
            for e in ways.values():
                new = e.vpn in filled and (fetch is None or fetch in filled[e.vpn])
                cells.append(Text(_tlb_cell(e) + ("*" if new else " "),
                                  style="bold yellow" if new else ""))
            cells += [Text("·")] * (tlb.ways - len(cells))
            t.add_row(str(i), *cells)
        parts.append(t)
        large = list(tlb.large.values())
        parts.append(_note(f"4 MiB entries: {len(large)} of {tlb.large_entries} valid"
                           + (": " + ", ".join(_tlb_cell(e) for e in large) if large else "")))
    space = "ppn (guest-physical)" if s.vmm is None else "mpn (machine)"
    parts.append(_note(f"vpn→{space}; W/r writable, U/s user, D dirty, G global; "
                       "* filled by the last command; · an invalid way"))
    return Group(*parts)


# --- guest page table ----------------------------------------------------------------
def pt_view(session, va: int | None = None) -> Group:
    p = Probe(session.system)
    if not p.guest_paging:
        return Group(_note("guest paging is off (CR0.PG = 0): va = pa; the guest has no "
                           "page table in use"))
    if va is not None:
        return _walk_view(p, va)
    cr3 = p.cpu.cr3
    rows = []
    for vpn, ppn, entry, large in p.guest_mappings():
        if ppn is not None:
            rows.append((vpn, ppn, decode_flags(entry, pde=large) + (" (4M)" if large else "")))
    ranges = fold(rows)
    head = _head(f"the guest's page table · CR3 = pa {cr3:#010x} · {len(rows):,} pages "
                 f"mapped, in {len(ranges)} ranges")
    t = _table("va", "", "pa", "pages", "flags")
    shown, more = _more(ranges, MAX_ROWS, "ranges ('pt VA' shows one walk)")
    for r in shown:
        t.add_row(_va_range(r), "->", _pa_range(r.target, r.count), f"{r.count:,}", r.label)
    return Group(head, t, *([more] if more else []))


def _va_range(r) -> str:
    lo, hi = r.first << 12, ((r.last + 1) << 12) - 1
    return f"{lo:#010x}-{hi:#010x}" if r.count > 1 else f"{lo:#010x}"


def _pa_range(first: int | None, count: int, space: str = "") -> str:
    if first is None:
        return "-"
    lo = first << 12
    if count == 1:
        return f"{space}{lo:#010x}"
    return f"{space}{lo:#010x}-{((first + count) << 12) - 1:#010x}"


def _walk_view(p: Probe, va: int) -> Group:
    w = p.walk(va)
    lines = [f"the guest's walk of va {va:#010x} (CR3 = pa {p.cpu.cr3:#010x}; a view: "
             "no A/D bit set)"]
    lines += ["  " + ln for ln in str(w).split("\n")]
    return Group(*(Text(ln, no_wrap=True) for ln in lines))


# --- shadow table -----------------------------------------------------------------
def spt_view(session, va: int | None = None) -> Group:
    s = session.system
    p = Probe(s)
    if s.vmm is None:
        return Group(_note("native mode: there is no shadow table and no VMM; the hardware "
                           "walks the guest's own table ('pt' shows it)"))
    shadow = getattr(s.vmm, "shadow", None)
    if shadow is None:
        return _nested_view(session, p)
    root = s.vmm.root
    if va is not None:
        return _spt_entry(session, p, va)
    pmap = s.vmm.pmap
    guest = {}
    if p.guest_paging:
        for vpn, ppn, entry, _ in p.guest_mappings():
            if ppn is not None:
                guest[vpn] = (ppn, entry)
    shadowed = {}
    for pdx, spde in enumerate(p.machine_table(root.mpn)):
        if not spde & PTE_P:
            continue
        for ptx, spte in enumerate(p.machine_table(spde >> 12)):
            if spte & PTE_P:
                shadowed[(pdx << 10) | ptx] = spte
    if not p.guest_paging:
        guest = {vpn: (vpn, -1) for vpn in shadowed}     # physical mode: pa = va
    rows = []
    for vpn in sorted(set(guest) | set(shadowed)):
        ppn, gpte = guest.get(vpn, (None, 0))
        spte = shadowed.get(vpn)
        mpn = None if spte is None else spte >> 12
        mark = _difference(shadow, pmap, ppn, gpte, spte, p.guest_paging, vpn)
        label = ("(pa = va)" if gpte == -1 else decode_flags(gpte) if ppn is not None else "-",
                 decode_flags(spte) if spte is not None else "-", mark)
        rows.append((vpn, (ppn, mpn), label))
    ranges = _fold_pairs(rows)
    which = (f"shadow root mpn {root.mpn:#x} shadows the guest's page directory at pa "
             f"{s.cpu.cr3 & ~0xFFF:#010x}" if root.key[0] == "pd" else
             f"shadow root mpn {root.mpn:#x}: physical mode (guest paging is off)")
    head = _head(f"the guest's table beside the shadow · {which}")
    t = _table("va", "ppn", "gpte flags", "mpn", "spte flags", "")
    shown, more = _more(ranges, MAX_ROWS, "ranges ('spt VA' compares one entry)")
    for first, count, (ppn, mpn), (gflags, sflags, mark) in shown:
        lo, hi = first << 12, ((first + count) << 12) - 1
        va = f"{lo:08x}-{hi:08x}" if count > 1 else f"{lo:08x}"
        t.add_row(va, _pn_range(ppn, count), gflags, _pn_range(mpn, count), sflags, mark)
    legend = _note("not shadowed yet: the VMM fills sptes on demand (hidden faults); "
                   "read-only: the first write exits (D tracking or a write-protected guest "
                   "table); !! : the shadow disagrees with the guest")
    return Group(head, t, *([more] if more else []), legend)


def _difference(shadow, pmap, ppn, gpte, spte, guest_paging, vpn) -> str:
    if spte is None:
        return "not shadowed yet" if ppn is not None else ""
    mpn = spte >> 12
    if ppn is None:
        if not guest_paging:
            ppn = vpn
        else:
            return "!! the guest does not map it"
    if pmap.mpn_of.get(ppn) != mpn:
        return f"!! ppn {ppn:#x} is not at this mpn"
    if gpte != -1 and gpte & PTE_W and not spte & PTE_W:
        if shadow.is_protected(ppn):
            return "read-only: a guest page table"
        return "read-only: D clear"
    return ""


def _fold_pairs(rows):
    """Fold (vpn, (ppn, mpn), label) rows with both targets consecutive."""
    out = []
    for vpn, (ppn, mpn), label in rows:
        if out:
            first, count, (p0, m0), lab = out[-1]
            if (vpn == first + count and lab == label
                    and (ppn is None) == (p0 is None) and (mpn is None) == (m0 is None)
                    and (ppn is None or ppn == p0 + count)
                    and (mpn is None or mpn == m0 + count)):
                out[-1] = (first, count + 1, (p0, m0), lab)
                continue
        out.append((vpn, 1, (ppn, mpn), label))
    return out


def _spt_entry(session, p: Probe, va: int) -> Group:
    vpn = va >> 12
    lines = [f"va {va:#010x}: the guest's walk and the shadow's entry"]
    w = p.walk(va)
    if w is None:
        lines.append("  guest paging is off: pa = va (physical mode)")
    else:
        lines += ["  guest:  " + ln.strip() for ln in str(w).split("\n")[1:]]
    spde, spte = p.shadow_entry(vpn)
    root = session.system.vmm.root
    if spde is None:
        lines.append("  shadow: no root")
    else:
        lines.append(f"  shadow: spde[{vpn >> 10:#05x}] in root mpn {root.mpn:#x} = "
                     f"{spde:#010x}  [{decode_flags(spde, pde=True)}]")
        if spte is None:
            lines.append("          no shadow table under it: a miss is a hidden fault")
        else:
            lines.append(f"          spte[{vpn & 0x3FF:#05x}] = {spte:#010x}  "
                         f"[{decode_flags(spte)}]")
    return Group(*(Text(ln, no_wrap=True) for ln in lines))


def _nested_view(session, p: Probe) -> Group:
    nested = getattr(session.system.vmm, "nested", None)
    head = _note("nested paging has no shadow table: the hardware walks the guest's own "
                 "table and, for every guest-physical address, the VMM's nested table "
                 "(pa -> ma) below")
    if nested is None or not hasattr(nested, "entries"):
        return Group(head)
    rows = [(ppn, npte >> 12, decode_flags(npte)) for ppn, npte in nested.entries()]
    ranges = fold(rows)
    head2 = _head(f"the nested table · {len(rows):,} guest pages mapped")
    t = _table("pa", "", "ma", "pages", "npte flags")
    shown, more = _more(ranges, MAX_ROWS, "ranges")
    for r in shown:
        t.add_row(_pa_range(r.first, r.count), "->", _pa_range(r.target, r.count),
                  f"{r.count:,}", r.label)
    return Group(head, head2, t, *([more] if more else []))


# --- PMap -------------------------------------------------------------------------
def pmap_view(session) -> Group:
    s = session.system
    if s.vmm is None:
        return Group(_note("native mode: there is no PMap; guest-physical memory is the "
                           "machine's own memory (pa = ma)"))
    pmap, machine = s.vmm.pmap, s.vmm.machine
    rows = [(ppn, mpn, pmap.state(ppn)) for ppn, mpn in pmap.items()]
    rows += [(ppn, None, pmap.state(ppn)) for ppn in getattr(pmap, "swapped", ())]
    ranges = fold(sorted(rows, key=lambda r: r[0]))
    owners: dict[str, int] = {}
    for owner in machine.owner.values():
        owners[owner] = owners.get(owner, 0) + 1
    head = _head(f"the PMap of {pmap.name} · {len(pmap.mpn_of):,} of {pmap.npages:,} guest "
                 "pages backed (the rest unbacked: they read as zeros)")
    t = _table("ppn", "", "mpn", "pages", "state")
    shown, more = _more(ranges, MAX_ROWS, "ranges")
    for r in shown:
        t.add_row(_pn_range(r.first, r.count), "->", _pn_range(r.target, r.count),
                  f"{r.count:,}", r.label)
    last = None
    for _, ev, _ in session.shown_events(session.nevents - len(session.events)):
        if ev.kind == "pmap_lookup" and ev.data.get("allocated"):
            last = ev
    what = {"vmm": "by the VMM (shadow or nested tables)", "shared": "shared by guest pages"}
    users = ", ".join(f"{n:,} {what.get(o, 'by ' + o)}" for o, n in sorted(owners.items()))
    notes = [_note(f"machine memory: {len(machine.owner):,} of {machine.npages:,} pages in "
                   f"use: {users or 'none'}")]
    if last is not None:
        notes.append(_note(f"last allocation: ppn {last.data['ppn']:#x} -> mpn "
                           f"{last.data['mpn']:#x} (zeroed), at cycle {last.cycle:,}"))
    return Group(head, t, *([more] if more else []), *notes)


def _pn_range(first: int | None, count: int) -> str:
    if first is None:
        return "-"
    return f"{first:#x}" if count == 1 else f"{first:#x}-{first + count - 1:#x}"


# --- memory -----------------------------------------------------------------------
def mem_view(session, space: str, addr: int, n: int = 64) -> Group:
    p = Probe(session.system)
    n = max(4, min(n, 4096))
    addr &= 0xFFFFFFFF
    native = session.system.vmm is None
    path = []
    if space == "va":
        pa = p.va_to_pa(addr)
        if pa is None:
            raise EmuError(f"va {addr:#010x} is not mapped by the guest's table")
        path.append(f"va {addr:#010x} -> pa {pa:#010x}")
        data = p.read_va(addr, n)
        if data is None:        # the mapping ends before n bytes: up to its end
            data = p.read_pa(pa, min(n, 4096 - (addr & 0xFFF)))
        if data is None:
            raise EmuError(f"va {addr:#010x} maps pa {pa:#010x}, outside guest RAM "
                           f"({p.gmem.size >> 20} MiB)")
    elif space == "pa":
        data = p.read_pa(addr, n)
        if data is None:
            raise EmuError(f"pa {addr:#010x} is outside guest RAM "
                           f"({p.gmem.size >> 20} MiB)")
        pa = addr
    elif space == "ma":
        if native:
            path.append("native mode: ma = pa")
        data = p.read_ma(addr, n)
        if data is None:
            raise EmuError(f"ma {addr:#010x} is outside machine memory")
        pa = None
        if not native:
            owner = session.system.vmm.machine.owner.get(addr >> 12)
            ppn = session.system.vmm.pmap.ppn_of.get(addr >> 12)
            who = ("free" if owner is None else f"ppn {ppn:#x} of {owner}" if ppn is not None
                   else f"owned by the {owner}")
            path.append(f"mpn {addr >> 12:#x}: {who}")
    else:
        raise EmuError(f"mem takes va, pa or ma, not '{space}'")
    if pa is not None and not native:
        ma = p.pa_to_ma(pa)
        path.append(f"pa {pa:#010x} -> " + (f"ma {ma:#010x}" if ma is not None else
                                            "unbacked (no machine page yet: reads as zeros)"))
    lines = [Text(" · ".join(path), style="italic")] if path else []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        words = " ".join(chunk[i:i + 4][::-1].hex() for i in range(0, len(chunk) - 3, 4))
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(Text(f"{space} {addr + off:#010x}  {words:<35}  |{ascii_}|",
                          no_wrap=True))
    return Group(*lines)


# --- statistics and trace -----------------------------------------------------------
def stats_view(session) -> Group:
    s = session.system
    st = s.stats()
    cpu, mmu = st["cpu"], st["mmu"]
    t = _table("run so far", "")
    t.add_row("instructions", f"{cpu['instructions']:,}")
    t.add_row("cycles (simulated time)", f"{int(s.env.now):,}")
    t.add_row("exceptions (vector:n)", " ".join(
        f"{k}:{v}" for k, v in cpu["exceptions"].items()) or "-")
    t.add_row("interrupts", f"{cpu['interrupts']:,}")
    t.add_row("hardware walks / refs", f"{mmu['walks']:,} / {mmu['walk_refs']:,}")
    t.add_row("TLB fills", f"{mmu['tlb_fills']:,}")
    for name in ("tlb", "itlb", "dtlb"):
        if name in mmu:
            x = mmu[name]
            t.add_row(f"{name} lookups / hits / misses",
                      f"{x['lookups']:,} / {x['hits']:,} / {x['misses']:,}")
    parts = [t]
    v = st.get("vmm")
    if v is None:
        parts.append(_note("native mode: no VMM, so no exits, shadow pages or PMap"))
    else:
        vt = _table(f"VMM ({v.get('policy', session.mode)})", "")
        for reason, n in v["exits"].items():
            vt.add_row(f"exits: {reason}", f"{n:,}")
        for kind, n in v.get("faults", {}).items():
            vt.add_row(f"faults: {kind}", f"{n:,}")
        for key in ("injected", "emulated"):
            if key in v:
                vt.add_row(key, f"{v[key]:,}")
        for key, n in v.get("shadow", {}).items():
            vt.add_row(key.replace("_", " "), f"{n:,}")
        vt.add_row("PMap pages resident", f"{v['pmap']['resident']:,}")
        vt.add_row("machine pages in use", f"{v['machine']['allocated']:,}")
        parts.append(vt)
    ct = _table("cycles by category", "")
    for cat, cyc in sorted(st["cycles_by_category"].items(), key=lambda kv: -kv[1]):
        ct.add_row(cat, f"{cyc:,}")
    parts.append(ct)
    return Group(*parts)


def trace_view(session, n: int = 20) -> Group:
    first = max(session.shown - n, session.nevents - len(session.events), 0)
    lines = []
    for i, ev, _ in session.shown_events(first):
        step = f"[{ev.step}]" if ev.step else "   "
        lines.append(Text(f"#{i:<6} cycle {ev.cycle:>10,} {step} {describe(ev)}",
                          no_wrap=True, overflow="ellipsis"))
    if not lines:
        lines.append(_note("no trace events yet"))
    pending = session.nevents - session.shown
    if pending:
        lines.append(_note(f"({pending} more already happened in this simpy event: "
                           "'micro' shows them one by one)"))
    return Group(*lines)
