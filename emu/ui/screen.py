"""The stepper's screen: code, registers, the fault being handled, what the
last command did.  Small renderables built from a session, redrawn after
every motion and sized to the console.

    ─ header: program, mode, instructions, cycle ──────────────────────────
    ╭ code around eip ──────────────────────╮╭ registers ───────╮
    ╰───────────────────────────────────────╯╰──────────────────╯
    ╭ the fault: its six steps, the current one marked ────────────────────╮
    ╰──────────────────────────────────────────────────────────────────────╯
    this command: ...   console: ...
    > why the command stopped
"""

from __future__ import annotations

import os
import re

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..asm import disassemble
from ..hw.exceptions import describe_vector
from ..hw.paging import decode_flags
from ..isa import REGS32
from .grid import grid_lines
from .probe import Probe
from .story import (
    STEP_TITLES,
    error_text,
    find_story,
    kind_text,
    native_walk_lines,
    pmap_how,
    story_visible,
    walk_lines,
)

REGS_WIDTH = 32
CURRENT = "bold reverse"
CHANGED = "bold yellow"


def symbolize(image, addr: int | None) -> str:
    """``<label+0x5>`` for an address near a label, else empty."""
    if addr is None:
        return ""
    near = image.nearest_label(addr)
    if near is None or near[1] > 0x1000:
        return ""
    name, off = near
    return f"<{name}+{off:#x}>" if off else f"<{name}>"


# --- code -------------------------------------------------------------------------
def code_lines(session, count: int) -> list[tuple[int | None, str]]:
    """(address or None for a label line, text) around eip, ``count`` lines."""
    image, cpu = session.image, session.system.cpu
    probe = Probe(session.system)
    eip = cpu.eip
    near = image.nearest_label(eip)
    starts = [eip]
    if near is not None and near[1] <= 1024:
        starts.insert(0, eip - near[1])
    span = 12 * count
    for start in starts:
        data = bytearray()
        for a in range(start, eip + span, 256):          # stop where the mapping stops
            chunk = probe.read_va(a, min(256, eip + span - a))
            if chunk is None:
                break
            data += chunk
        if len(data) <= eip - start:
            continue
        lines = disassemble(lambda a, s=start, d=data: d[a - s], start,
                            start + len(data), image.labels, image.data_lengths(), eip)
        at = next((i for i, ln in enumerate(lines) if ln.addr == eip), None)
        if at is None:
            continue
        rows: list[tuple[int | None, str]] = []
        for ln in lines:
            rows.extend((None, f"{name}:") for name in image.labels_at(ln.addr))
            rows.append((ln.addr, source_text(image, ln)))
        cur = next(i for i, (a, _) in enumerate(rows) if a == eip)
        first = max(0, min(cur - count // 3, len(rows) - count))
        return rows[first:first + count]
    return [(None, f"eip {eip:#010x} is not mapped by the guest: fetching it faults")]


def source_text(image, line) -> str:
    """The instruction (or data) as its source wrote it (constants by name,
    a macro's line expanded), when the bytes at its address are still the
    image's; else its disassembly."""
    src = image.source_at(line.addr)
    if src is None:
        held = image.data.get(line.addr)    # a data line: its bytes, all of them
        if held is not None and held[1] == len(line.bytes):
            src = held[0]
    if src is None or any(image.byte_at(line.addr + i) != b for i, b in enumerate(line.bytes)):
        return line.text
    return _LABEL.sub("", src.text) or line.text


_LABEL = re.compile(r"^\s*\$?[A-Za-z_.?@][\w.?@$#~]*:\s*")


def code_panel(session, count: int) -> Panel:
    cpu = session.system.cpu
    bps = {bp.value for bp in session.breakpoints if bp.kind == "addr"}
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (addr, line) in enumerate(code_lines(session, count)):
        if i:
            text.append("\n")
        if addr is None:
            text.append(f"    {line}", style="cyan")
            continue
        mark = "▶" if addr == cpu.eip else " "
        bp = "●" if addr in bps else " "
        row = f"{mark}{bp} {addr:#010x}  {line}"
        text.append(row, style=CURRENT if addr == cpu.eip else "")
    title = f"code · eip {cpu.eip:#010x} {symbolize(session.image, cpu.eip)}".rstrip()
    src = session.image.source_at(cpu.eip)
    where = f"{os.path.basename(src.file)}:{src.line}" if src is not None else None
    return Panel(text, title=title, title_align="left", subtitle=where,
                 subtitle_align="right", box=box.ROUNDED)


# --- registers --------------------------------------------------------------------
def registers_panel(session) -> Panel:
    now, before = session.registers(), session.regs_before
    text = Text(no_wrap=True)

    def reg(name: str, width: int = 8, label: str | None = None) -> None:
        value = now[name]
        changed = value != before.get(name)
        text.append(f"{label or name:<3} ")
        text.append(f"{value:0{width}x}", style=CHANGED if changed else "")
        text.append("* " if changed else "  ")

    for a, b in zip(REGS32[0::2], REGS32[1::2]):
        reg(a)
        reg(b)
        text.append("\n")
    reg("eip")
    reg("eflags", label="efl")
    text.append("\n")
    flags = [n for n, bit in (("CF", 0x1), ("ZF", 0x40), ("SF", 0x80), ("IF", 0x200),
                              ("OF", 0x800)) if now["eflags"] & bit]
    text.append(f"    {' '.join(flags) or '-':<12}  cpl {now['cpl']}")
    text.append("*\n" if now["cpl"] != before.get("cpl") else "\n")
    reg("cr0")
    reg("cr3")
    text.append("\n")
    reg("cr2")
    reg("cr4")
    return Panel(text, title="registers", title_align="left", box=box.ROUNDED,
                 width=REGS_WIDTH)


# --- the fault --------------------------------------------------------------------
def _step_lines(session, story) -> dict[int, list[str]]:
    """The data of each step reached, as text lines."""
    image = session.image
    out: dict[int, list[str]] = {}
    exit_ev = story.find("vm_exit", 2)
    first = story.first
    if first.kind in ("shadow_walk", "nested_walk", "walk"):
        lines = walk_lines(first.data.get("walk"), "s", "ma")
        if first.data.get("grid"):
            lines += grid_lines(first.data["grid"], indent="", fault=True)
        if "gpa" in first.data:
            lines.append(f"no nested entry maps gpa {first.data['gpa']:#010x}")
        else:
            lines.append(f"-> #PF, {error_text(first.data.get('error_code'))}: "
                         "intercepted, a VM exit")
        out[1] = lines
    if exit_ev is not None:
        d = exit_ev.data
        ec = f", {error_text(d['error_code'])}" if d.get("error_code") is not None else ""
        lines = [f"exit reason {d.get('reason')}{ec}, at eip {d.get('eip'):#010x} "
                 f"{symbolize(image, d.get('eip'))}".rstrip()]
        if "gpa" in d:
            lines.append(f"gpa {d['gpa']:#010x} (the VMM needs no guest walk)")
        gw = story.find("guest_walk", 2)
        if gw is not None:
            lines.append("the guest's table:")
            lines += ["  " + ln for ln in walk_lines(gw.data.get("walk"), "g", "pa")]
        elif story.step >= 3 and "gpa" not in d:
            lines.append("guest paging is off: pa = va (physical mode)")
        out[2] = lines
    lines = []
    for ev in story.events(3):
        d = ev.data
        if ev.kind.endswith("_fault"):
            lines.append(kind_text(story) or ev.kind)
            if ev.kind == "true_fault":
                lines.append(f"the guest's walk: {error_text(d.get('error_code'))}")
        elif ev.kind == "pmap_lookup":
            lines.append(f"PMap: ppn {d['ppn']:#x} -> mpn {d['mpn']:#x} ({pmap_how(d)})")
        elif ev.kind == "inject":
            lines.append(f"inject {describe_vector(d['vector'])}, error code "
                         f"{d.get('error_code'):#x}, into the guest")
    if lines:
        out[3] = lines
    lines = []
    for ev in story.events(4):
        d = ev.data
        if ev.kind == "shadow_fill":
            spde, _ = Probe(session.system).shadow_entry(ev.va >> 12)
            if spde and session.system.vmm.root.mpn == d["root"]:
                lines.append(f"spde[{ev.va >> 22:#05x}] = {spde:#010x}  "
                             f"{_flags(spde, pde=True)}  (-> shadow table mpn {spde >> 12:#x})")
            lines.append(f"spte[{(ev.va >> 12) & 0x3FF:#05x}] := {d['spte']:#010x}  "
                         f"{_flags(d['spte'])}  (-> mpn {d['mpn']:#x}; shadow root mpn "
                         f"{d['root']:#x})")
        elif ev.kind == "nested_fill":
            lines.append(f"npte[ppn {d['ppn']:#x}] := {d['npte']:#010x}  {_flags(d['npte'])}")
        elif ev.kind == "emulate":
            through = next((e for e in story.events() if e.kind == "tlb_fill"
                            and e.step is None and e.cycle <= ev.cycle), None)
            if through is not None:
                t = through.data
                lines.append(f"the write went through a writable spte: TLB fill va "
                             f"{through.va:#010x} -> mpn {t['pn']:#x} "
                             f"({'W' if t.get('writable') else 'r'}"
                             f"{' U' if t.get('user') else ' s'})")
            changed = ", ".join(f"{i:#x}" for i in d.get("changed", [])[:8]) or "none"
            lines.append(f"then the spte is read-only again; guest entries changed: "
                         f"[{changed}]; {d.get('dropped')} sptes dropped")
    if story.step >= 5 and story.kind == "true" and not lines:
        lines.append("- (a true fault writes no shadow entry)")
    if lines:
        out[4] = lines
    entry = story.find("vm_entry", 5)
    if entry is not None:
        action = entry.data.get("action")
        deliver = story.find("deliver")
        if action == "inject" and deliver is not None:
            h = deliver.data.get("handler")
            out[5] = [f"VM entry at the guest's handler {h:#010x} {symbolize(image, h)}"
                      .rstrip()]
        elif action == "emulate":
            out[5] = ["VM entry after the emulated instruction"]
        elif exit_ev is not None:
            eip = exit_ev.data.get("eip")
            out[5] = [f"VM entry: restart the faulting instruction at {eip:#010x}"]
        else:
            out[5] = [f"VM entry ({action})"]
    lines = []
    for ev in story.events(6):
        d = ev.data
        if ev.kind == "tlb_fill":
            which = "itlb" if d.get("fetch") else "dtlb"
            rights = ("W" if d.get("writable") else "r") + (" U" if d.get("user") else " s")
            space = "mpn" if not story.native else "ppn"
            lines.append(f"TLB fill ({which}): va {ev.va:#010x} -> {space} {d['pn']:#x} "
                         f"({rights})")
        elif ev.kind.endswith("walk"):
            lines.append(f"the hardware walk succeeds ({d.get('refs')} references): "
                         f"frame {d.get('frame', 0):#010x}")
    if story.done and not lines:
        if story.kind == "true":
            lines.append("- the guest's #PF handler runs; its fix-up and the retry "
                         "are faults of their own")
        elif story.entered == "emulate":
            lines.append("- the guest goes on at the next instruction")
        elif story.entered == "resume":
            lines.append("- the restart took another path first (an interrupt, another "
                         "fault): no walk of this page yet")
    if lines:
        out[6] = lines
    return out


# Faults the VMM answers by letting the one instruction write (no spte is
# filled for the guest to retry through): steps 4 and 6 say so.
EMULATED = ("tracing", "wp-emulate")
EMULATED_TITLES = {4: "the VMM lets the write through once, then syncs its shadows",
                   6: "no restart: the instruction is done"}


def _flags(entry: int, pde: bool = False) -> str:
    return decode_flags(entry, pde=pde)


def fault_panel(session, story, compact: bool = False) -> Panel:
    """The six steps; ``compact``: the data of the current step only (a
    short terminal)."""
    if story.native:
        return _native_panel(session, story)
    titles = STEP_TITLES.get(session.mode, STEP_TITLES["shadow"])
    if story.kind in EMULATED:
        titles = {**titles, **EMULATED_TITLES}
    data = _step_lines(session, story)
    text = Text(no_wrap=True, overflow="ellipsis")
    current = story.step
    for n in range(1, 7):
        if n > 1:
            text.append("\n")
        reached = n in data
        if n == current and not story.done:
            text.append(f"▶ {n} {titles[n]}", style=CURRENT)
        elif reached:
            text.append(f"  {n} {titles[n]}", style="bold")
        else:
            text.append(f"· {n} {titles[n]}", style="dim")
        if compact and n != current:
            continue
        for line in data.get(n, []):
            text.append(f"\n      {line}")
    fault_exit = getattr(session.system.vmm, "FAULT_EXIT", None)
    exit_name = {"npf": "EPT violation"}.get(getattr(fault_exit, "reason", ""), "#PF exit")
    kind = f"{story.kind} fault" if story.kind else exit_name
    state = "done" if story.done else f"step {current} of 6"
    title = (f"{kind} · va {story.va:#010x} "
             f"({story.access}) · {state}")
    return Panel(text, title=title, title_align="left", box=box.ROUNDED)


def _native_panel(session, story) -> Panel:
    d = story.first.data
    text = Text(no_wrap=True, overflow="ellipsis")
    what = describe_vector(d["vector"])
    h = d.get("handler")
    if session.system.vmm is None:
        text.append("native mode: no VMM, no shadow table, no PMap; the hardware walks the "
                    "guest's own table")
    else:
        text.append(f"{session.mode} paging: the guest's own fault, delivered by the "
                    "hardware without a VM exit")
    if d["vector"] == 14:
        text.append("\nthe walk that faulted:")
        for line in native_walk_lines(story.extra):
            text.append(f"\n      {line}")
        text.append(f"\n-> {what}, {error_text(d.get('error_code'))}, CR2 = "
                    f"{d.get('cr2'):#010x}")
    else:
        text.append(f"\n-> {what} at eip {d.get('eip'):#010x}")
    text.append(f"\ndelivered through the IDT to the guest's handler {h:#010x} "
                f"{symbolize(session.image, h)}".rstrip())
    text.append("\n(the CPU ran the handler's first instruction with the delivery: it does "
                "not stop between them)", style="dim")
    va = d.get("cr2") if d["vector"] == 14 else d.get("eip")
    where = "native" if session.system.vmm is None else "delivered by the hardware"
    return Panel(text, title=f"{what} · va {va or 0:#010x} · {where}", title_align="left",
                 box=box.ROUNDED)


# --- the rest -----------------------------------------------------------------------
def header(session) -> Text:
    s = session.system
    policy = f" ({s.config.shadow_policy})" if session.mode == "shadow" else ""
    state = f" · {s.outcome}" if s.finished else ""
    return Text.assemble(
        ("emu step ", "bold"), (session.image.source_name.rsplit("/", 1)[-1], "bold"),
        f" · {session.mode}{policy} · instructions {s.cpu.icount:,} · "
        f"cycle {int(s.env.now):,}{state}", style="")


def activity(session) -> list[str]:
    """What the last motion did, in a line or two."""
    counts: dict[str, int] = {}
    faults: list[str] = []
    for _, ev, _ in session.shown_events(session.shown_before):
        key = ev.kind
        if ev.kind == "vm_exit":
            key = f"{ev.data.get('reason')} exit"
        counts[key] = counts.get(key, 0) + 1
        if ev.kind.endswith("_fault") and ev.step == 3:
            faults.append(f"{ev.kind[:-6]} {ev.va:#x}")
        elif ev.kind == "deliver" and ev.data.get("source") == "fault":
            faults.append(f"{describe_vector(ev.data['vector']).split()[0]} "
                          f"{(ev.data.get('cr2') or 0):#x}")
    if not counts:
        return []
    parts = [f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items())]
    lines = ["events: " + ", ".join(parts)]
    if faults:
        more = f" (+{len(faults) - 6} more)" if len(faults) > 6 else ""
        lines.append("faults: " + ", ".join(faults[-6:]) + more)
    return lines


def console_tail(session, n: int = 2) -> list[str]:
    text = session.system.console.text()
    if not text:
        return []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return ["guest console: " + ln for ln in lines[-n:]]


def screen(session, width: int, height: int, message: str = "") -> Group:
    """The whole screen for a console ``width`` x ``height``."""
    story = find_story(session)
    notes = activity(session) + console_tail(session)
    used = 1 + 2 + sum(1 + len(n) // width for n in notes) + (1 if message else 0) + 1
    panel = None
    if story_visible(session, story):
        panel = fault_panel(session, story)
        if used + 2 + len(panel.renderable.plain.split("\n")) + 10 > height:
            panel = fault_panel(session, story, compact=True)
        used += 2 + len(panel.renderable.plain.split("\n"))
    count = max(8, min(17, height - used - 2))   # 8: as tall as the registers
    top = Table.grid(expand=True)
    top.add_column(ratio=1)
    top.add_column(width=REGS_WIDTH)
    top.add_row(code_panel(session, count), registers_panel(session))
    parts = [header(session), top]
    if panel is not None:
        parts.append(panel)
    for line in notes:
        parts.append(Text(line, style="dim"))
    if message:
        parts.append(Text("> " + message, style="bold"))
    return Group(*parts)
