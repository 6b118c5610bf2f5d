"""Every narration template against the record it tells.

Each line of a told fault story is parsed back and compared with the trace
events of that story, with the bits decoded here on their own (not through
``decode_flags``) and with what the architecture implies: a true fault's
guest walk denies the access, a hidden fault's allows it, a dirty fault's
sets D, the spte maps the PMap's machine page with rights the guest entry
allows (and read-only while the guest's D is clear), the restart's TLB fill
holds the spte's rights.  The runs cover every kind of fault (the wp-emulate
and copy-on-write ones too), pages read back from the swap disk, nested
paging's EPT violations and runs that end in the middle of a story.
"""

from __future__ import annotations

import re

import pytest

from emu.asm import assemble
from emu.multi import build
from emu.programs import assemble_file, resolve
from emu.story import build_stories
from emu.system import Config, System
from emu.ui.narrate import Narrator, one_line, tell

P, W, U, A, D, PS = 1, 2, 4, 0x20, 0x40, 0x80
HEX = r"0x[0-9a-f]+"


def events_of(image, **config) -> list:
    system = System(image, Config(**config))
    events: list = []
    system.bus.subscribe(events.append)
    system.run()
    return events


def program(name: str, **config) -> list:
    return events_of(assemble_file(resolve(name)), **config)


# A kernel write that CR0.WP=0 lets through a read-only pte: a wp-emulate fault.
WP0 = """
org 0x1000
_start:
    mov esp, 0x80000
    mov edi, 0x100000                 ; page directory
    mov dword [edi], 0x101003         ; pde 0 -> page table at 0x101000, P W
    mov edi, 0x101000
    mov ecx, 0
.map:                                 ; identity-map 0..4 MiB, P W
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov [edi + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [edi + 0x200*4], 0x200001   ; va 0x200000: read-only
    mov eax, 0x100000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000                ; PG, WP clear
    mov cr0, eax
    mov eax, [0x200000]
    mov dword [0x200000], 0x5EED      ; allowed: CR0.WP = 0
    mov eax, [0x200000]
    out 0xF4, eax
"""

# Paging off, 160 pages each, three rounds: two copies on 256 machine
# pages swap out and back in all the time.
SWAP = """
org 0x1000
_start:
    mov ebx, 0
.round:
    mov ecx, 0
.w:
    mov edx, ecx
    shl edx, 12
    mov [0x400FFC + edx], ebx
    inc ecx
    cmp ecx, 160
    jne .w
    inc ebx
    cmp ebx, 3
    jne .round
    mov eax, 0
    out 0xF4, eax
"""


def many(images, names, **config) -> dict:
    config = Config(**config)
    host, systems = build(images, names, config)
    events: dict = {s.name: [] for s in systems}
    for s in systems:
        s.bus.subscribe(events[s.name].append)
    host.start()
    host.env.run(until=host.env.all_of([s.start() for s in systems]))
    return events


@pytest.fixture(scope="module")
def runs() -> list[tuple[str, str, list]]:
    out = []
    for mode, policy in (("shadow", "trace-cache"), ("shadow", "oos-cache"),
                         ("nested", "trace-cache")):
        out.append((f"demand {mode} {policy}", mode,
                    program("demand", mode=mode, shadow_policy=policy)))
    out.append(("pager", "shadow", program("pager")))
    out.append(("exceptions", "shadow", program("exceptions")))
    out.append(("exceptions nested", "nested", program("exceptions", mode="nested")))
    for policy in ("trace-cache", "oos-drop"):
        out.append((f"wp0 {policy}", "shadow",
                    events_of(assemble(WP0, "wp0.s"), shadow_policy=policy)))
    hello = assemble_file(resolve("hello"))
    for mode in ("shadow", "nested"):
        group = many([hello, hello], ["a", "b"], mode=mode, share_interval=2000)
        for name, evs in group.items():
            # (the scan reports a merge to the VM whose page it frees)
            out.append((f"hello shared {name} {mode}", mode, evs,
                        [e for g in group.values() for e in g]))
        swap = assemble(SWAP, "swap.s")
        for name, evs in many([swap, swap], ["a", "b"], mode=mode, machine_mib=1,
                              swap_latency=100).items():
            out.append((f"swap {name} {mode}", mode, evs))
    for cycles in (25, 700, 1095):           # the run ends inside the first story
        for mode in ("shadow", "nested"):
            out.append((f"demand {mode} ends at {cycles}", mode,
                        program("demand", mode=mode, max_cycles=cycles)))
    return out


@pytest.fixture(scope="module")
def stories(runs) -> list:
    out = []
    for name, mode, events, *group in runs:
        for story in build_stories(events, mode):
            out.append((name, group[0] if group else events, story))
    return out


def test_the_runs_cover_every_kind_and_every_pmap_source(stories):
    kinds = {story.kind for _, _, story in stories}
    assert kinds >= {"hidden", "true", "dirty", "tracing", "unsync", "wp-emulate", "cow",
                     "nested", "native"}
    hows = {story.pmap.data["how"] for _, _, story in stories if story.pmap is not None}
    assert hows >= {"resident", "allocated", "swapped-in", "cow-broken"}
    assert any(story.ended for _, _, story in stories)


# --- bits, decoded here ---------------------------------------------------------------
def flags_agree(entry: int, printed: str, pde: bool = False) -> None:
    words = printed.split()
    if not entry & P:
        assert words == ["np"], (hex(entry), printed)
        return
    assert words[:3] == ["P", "W" if entry & W else "r", "U" if entry & U else "s"]
    assert ("A" in words) == bool(entry & A)
    assert ("D" in words) == bool(entry & D)
    assert ("PS" in words) == bool(pde and entry & PS)


WALK_LINE = re.compile(rf"^ +([sg])(pde|pte)\[({HEX})\] at (ma|pa) ({HEX}) = ({HEX})  (.+)$")


def walk_agrees(lines: list[str], walk: dict, prefix: str, space: str) -> None:
    levels = walk["levels"]
    assert len(lines) == len(levels)
    for line, lv in zip(lines, levels):
        m = WALK_LINE.match(line)
        assert m, line
        assert (m[1], m[2], m[4]) == (prefix, lv["name"], space)
        shift = 22 if lv["name"] == "pde" else 12
        assert int(m[3], 16) == (walk["va"] >> shift) & 0x3FF
        assert int(m[5], 16) == lv["entry_pa"]
        assert int(m[6], 16) == lv["value_after"]          # as the walk left it
        flags_agree(lv["value_after"], m[7], pde=lv["name"] == "pde")


def guest_frame(walk: dict | None, va: int) -> int:
    """The guest-physical page ``va`` maps to, from the walk's entries."""
    if walk is None:
        return va >> 12                     # physical mode: pa = va
    pde = walk["levels"][0]["value_after"]
    if pde & PS and len(walk["levels"]) == 1:
        return ((pde >> 22) << 10) | ((va >> 12) & 0x3FF)
    return walk["levels"][-1]["value_after"] >> 12


def allows(walk: dict | None, op: str, user: bool) -> bool:
    """Whether the guest's entries allow the access (CR0.WP aside)."""
    if walk is None:
        return True
    for lv in walk["levels"]:
        v = lv["value_after"]
        if not v & P or (user and not v & U) or (op == "write" and user and not v & W):
            return False
    return True


def lines_between(lines: list[str], start: str, stop: tuple[str, ...]) -> list[str]:
    i = next(k for k, line in enumerate(lines) if line.startswith(start))
    out = []
    for line in lines[i + 1:]:
        if line.startswith(stop):
            break
        out.append(line)
    return out


# --- the full telling -----------------------------------------------------------------
def check_shadow(story, lines: list[str], events: list) -> None:
    first = story.first
    ec = first.data["error_code"]
    walk = first.data.get("walk") or {}
    op = "write" if ec & 2 else "fetch" if walk.get("fetch") else "read"
    user = bool(ec & 4)
    m = re.match(rf"^── ([\w-]+) fault at va ({HEX}) \((\w+), (user|kernel)\) ── cycle ([\d,]+)$",
                 lines[0])
    assert m, lines[0]
    assert (m[1], int(m[2], 16), m[3], m[4] == "user", int(m[5].replace(",", ""))) == (
        story.kind, first.va, op, user, first.cycle)
    assert lines[1].startswith(" 1 TLB miss;" if not ec & 1 else
                               f" 1 no TLB entry allows the {op};")
    walk_agrees(lines_between(lines, " 1 ", ("      ->",)), walk, "s", "ma")
    why = "not present" if not ec & 1 else "protection"
    assert any(line.startswith(f"      -> #PF error {ec:#x} ({why}") for line in lines)
    exit_ev = story.exit
    if exit_ev is None:
        assert lines[-1] == "   (the run ended before the VM exit)"
        return
    two = next(line for line in lines if line.startswith(" 2 "))
    assert two.startswith(f" 2 VM exit at eip {exit_ev.data['eip']:#010x}; ")
    gw = story.guest_walk
    if gw is None:
        assert two.endswith("guest paging is off: pa = va (physical mode)")
    else:
        walk_agrees(lines_between(lines, " 2 ", (" 3 ",)), gw, "g", "pa")
    three = next(line for line in lines if line.startswith(" 3 "))
    leaf = gw["levels"][-1] if gw else None
    if story.kind == "true":
        assert not allows(gw, op, user) or op == "write"     # (a write denied by WP)
        tf = story.find("true_fault")
        assert three.endswith(f"inject #PF (error {tf.data['error_code']:#x}) into the guest")
        assert bool(tf.data["error_code"] & 1) == all(lv["value_after"] & P
                                                      for lv in gw["levels"])
        five = [line for line in lines if line.startswith(" 5 ")]
        assert five == ([" 5 VM entry at the guest's #PF handler"]
                        if story.entered == "inject" else [])
        return
    assert allows(gw, op, user) or story.kind == "wp-emulate"
    if story.kind == "dirty":
        assert leaf["value_after"] & D and op == "write"
        if not leaf["value"] & D:
            assert three.endswith(f"the walk set D (g{leaf['name']} {leaf['value']:#010x} -> "
                                  f"{leaf['value_after']:#010x})")
        else:
            assert "(D already set)" in three
    if story.kind == "wp-emulate":
        assert op == "write" and not user and not all(lv["value_after"] & W
                                                      for lv in gw["levels"])
    pm = story.pmap
    pline = next(line for line in lines if line.startswith("      PMap:"))
    m = re.match(rf"^      PMap: ppn ({HEX}) -> mpn ({HEX})(.*)$", pline)
    assert (int(m[1], 16), int(m[2], 16)) == (pm.data["ppn"], pm.data["mpn"])
    assert pm.data["ppn"] == guest_frame(gw, first.va)
    note = {"resident": "", "allocated": " (allocated now, zeroed)",
            "swapped-in": " (read back from the swap disk)",
            "cow-broken": " (a private copy: the sharing is broken)"}
    assert m[3] == note[pm.data["how"]]
    if story.kind == "cow":
        shared = {e.data["ppn"] for e in events if e.kind == "page_shared"
                  and e.cycle < first.cycle}          # this VM's or its twin's
        assert pm.data["ppn"] in shared and pm.data["how"] == "cow-broken"
    if story.kind in ("tracing", "unsync"):
        tables = {lv["value_after"] >> 12 for e in events if e.kind == "guest_walk"
                  for lv in e.data["walk"]["levels"][:1]}
        assert pm.data["ppn"] in tables                 # a page the guest uses as a table
    emu = story.find("emulate")
    four = [line for line in lines if line.startswith(" 4 ")]
    if emu is not None:
        assert story.kind in ("tracing", "wp-emulate")
        assert four == [" 4 the VMM lets the instruction write once, through a writable spte:"]
        i = lines.index(four[0])
        m = re.match(rf"^      TLB fill va ({HEX}) -> mpn ({HEX}) \(W [Us]\); in table page "
                     rf"ppn ({HEX}): (.*)$", lines[i + 1])
        assert m, lines[i + 1]
        assert (int(m[1], 16), int(m[2], 16)) == (first.va & ~0xFFF, pm.data["mpn"])
        assert int(m[3], 16) == emu.data["ppn"] == pm.data["ppn"]
        changed = emu.data["changed"]
        assert m[4] == ("no entry changed" if not changed else
                        "entries [" + ", ".join(f"{c:#x}" for c in changed[:8])
                        + (" ..." if len(changed) > 8 else "") + "] changed")
        assert lines[i + 2] == (f"      the spte is read-only again; {emu.data['dropped']} "
                                "shadow entries dropped")
        assert not [line for line in lines if line.startswith(" 6 ")]
        spte = None
    else:
        fill = story.find("shadow_fill")
        if fill is None:
            assert four == []
            return
        spte = fill.data["spte"]
        m = re.match(rf"^ 4 spte := ({HEX})  (.+)  \(mpn ({HEX})\)$", four[0])
        assert int(m[1], 16) == spte and int(m[3], 16) == spte >> 12 == pm.data["mpn"]
        flags_agree(spte, m[2])
        if spte & W and leaf is not None:
            assert leaf["value_after"] & D            # a clean page is mapped read-only
        if leaf is not None:
            assert bool(spte & U) == all(lv["value_after"] & U for lv in gw["levels"])
    five = [line for line in lines if line.startswith(" 5 ")]
    action = story.entered
    assert five == ({"resume": [" 5 VM entry: restart the faulting instruction"],
                     "emulate": [" 5 VM entry after the emulated instruction"]}.get(action, [])
                    if action else [])
    six = [line for line in lines if line.startswith(" 6 ")]
    tlb = story.restart_fill
    if tlb is None:
        assert six == []
        if story.ended:
            assert lines[-1] in ("   (the run ended before the VM entry)",
                                 "   (the run ended before the restarted instruction)")
        return
    m = re.match(rf"^ 6 the hardware walk succeeds: TLB fill va ({HEX}) -> mpn ({HEX}) "
                 rf"\(([Wr]) ([Us])\)$", six[0])
    assert int(m[1], 16) == first.va & ~0xFFF and int(m[2], 16) == spte >> 12
    assert (m[3] == "W") == bool(spte & W) and (m[4] == "U") == bool(spte & U)


def check_nested(story, lines: list[str]) -> None:
    first = story.first
    gpa = first.data["gpa"]
    assert lines[0] == (f"── nested fault (EPT violation) at va {first.va:#010x}, gpa {gpa:#010x} "
                        f"── cycle {first.cycle:,}")
    exit_ev = story.exit
    two = next((line for line in lines if line.startswith(" 2 ")), None)
    if exit_ev is not None:
        assert two.startswith(f" 2 VM exit (EPT violation) at eip {exit_ev.data['eip']:#010x};")
    pm, fill, tlb = story.pmap, story.find("nested_fill"), story.restart_fill
    if pm is not None:
        assert pm.data["ppn"] == gpa >> 12
        three = next(line for line in lines if line.startswith(" 3 "))
        assert three.startswith(f" 3 PMap: ppn {gpa >> 12:#x} -> mpn {pm.data['mpn']:#x}")
    if fill is not None:
        npte = fill.data["npte"]
        four = next(line for line in lines if line.startswith(" 4 "))
        m = re.match(rf"^ 4 npte := ({HEX})  (.+)  \(ppn ({HEX})\)$", four)
        assert int(m[1], 16) == npte and npte >> 12 == pm.data["mpn"]
        assert int(m[3], 16) == gpa >> 12
        flags_agree(npte, m[2])
    five = [line for line in lines if line.startswith(" 5 ")]
    assert five == ([" 5 VM entry: restart the faulting instruction"] if story.entered else [])
    if not story.entered:
        assert "   (the run ended before the VM entry)" in lines
    six = [line for line in lines if line.startswith(" 6 ")]
    if tlb is None:
        assert six == []
        return
    m = re.match(rf"^ 6 the 2D walk succeeds: TLB fill va ({HEX}) -> mpn ({HEX}) \(([Wr]) "
                 rf"([Us])\)$", six[0])
    assert int(m[1], 16) == first.va & ~0xFFF and int(m[2], 16) == npte >> 12
    assert (m[3] == "W") == bool(tlb.data["writable"])


def test_every_told_story_agrees_with_its_record(stories):
    checked = 0
    for name, events, story in stories:
        lines = tell(story)
        try:
            if story.native:
                d = story.first.data
                if d["vector"] == 14:
                    assert lines[0].startswith(f"· #PF at va {d['cr2']:#010x} (error "
                                               f"{d['error_code']:#x}) delivered to the guest's "
                                               f"handler at {d['handler']:#010x}")
                else:
                    assert lines[0].endswith(f"delivered to the guest's handler at "
                                             f"{d['handler']:#010x}")
            elif story.first.kind == "nested_walk":
                check_nested(story, lines)
            else:
                check_shadow(story, lines, events)
        except AssertionError as e:
            raise AssertionError(f"{name}: story at cycle {story.cycle}:\n"
                                 + "\n".join(lines)) from e
        checked += 1
    assert checked > 1000


def test_every_one_line_telling_agrees_with_its_record(stories):
    for _, _, story in stories:
        line = one_line(story)
        if story.native:
            continue
        first, pm = story.first, story.pmap
        if first.kind == "nested_walk":
            assert line.startswith(f"· nested fault at va {first.va:#010x}, gpa "
                                   f"{first.data['gpa']:#010x}: ppn {first.data['gpa'] >> 12:#x}")
            continue
        assert line.startswith(f"· {story.kind} fault at va {first.va:#010x} ({story.access})")
        fill, emu = story.find("shadow_fill"), story.find("emulate")
        if story.kind == "true":
            assert line.endswith(": injected into the guest")
        elif emu is not None:
            assert line.endswith(f": emulated, {emu.data['dropped']} shadow entries dropped")
        elif pm is not None and fill is not None:
            short = {"resident": "", "allocated": " (new)", "swapped-in": " (swapped in)",
                     "cow-broken": " (copied)"}[pm.data["how"]]
            assert line.endswith(f": ppn {pm.data['ppn']:#x} -> mpn {pm.data['mpn']:#x}{short}, "
                                 f"spte {fill.data['spte']:#010x}")


def test_cr3_and_invlpg_lines_agree_with_their_events(runs):
    for name, mode, events, *_ in runs:
        if mode != "shadow":
            continue
        told: list[str] = []
        narrator = Narrator(told.append, mode)
        for ev in events:
            narrator(ev)
        text = "".join(told).splitlines()
        cr3 = [line for line in text if line.startswith("· VM exit: guest CR3")]
        invlpg = [line for line in text if line.startswith("· VM exit: INVLPG")]
        loads = [e for e in events if e.kind == "cr3_load"]
        assert len(cr3) == len(loads), name
        for line, e in zip(cr3, loads):
            assert line.startswith(f"· VM exit: guest CR3 := {e.data['guest_cr3']:#010x}")
            if e.data.get("paging"):
                assert f"shadow root mpn {e.data['root']:#x}" in line
        flushes = [e for e in events if e.kind == "invlpg"]
        assert len(invlpg) == len(flushes), name
        for line, e in zip(invlpg, flushes):
            assert line.startswith(f"· VM exit: INVLPG {e.va:#010x}; the VMM invalidates it")


def test_the_vmm_freeing_tables_for_room_is_told_with_its_figures():
    import pathlib

    from emu.programs import include_dir
    image = assemble_file(pathlib.Path(__file__).parent / "programs" / "many_spaces.s",
                          include_dirs=[include_dir()])
    system = System(image, Config(mode="shadow", machine_mib=1))
    told: list[str] = []
    freed = []
    system.bus.subscribe(Narrator(told.append, "shadow", brief=True))
    system.bus.subscribe(lambda ev: ev.kind == "tables_freed" and freed.append(ev.data))
    r = system.run()
    lines = [line for line in "".join(told).splitlines() if "memory ran out" in line]
    assert freed and len(lines) == len(freed)
    assert sum(d["pages"] for d in freed) == r.stats["vmm"]["shadow"]["shrunk"]
    for line, d in zip(lines, freed):
        assert line == (f"· machine memory ran out and no guest page could go: the VMM freed "
                        f"{d['pages']} shadow pages the hardware was not walking "
                        f"({d['left']} left; the next faults rebuild what is used)")


# --- the stepper's access labels under nested paging ---------------------------------
def test_nested_stories_name_the_access_the_shadow_run_names():
    """An EPT violation's error code has only the write bit; fetches come
    from the TLB miss.  The shadow run's hardware #PF error code and walk
    say the same of the same instruction touching the same page."""
    shadow = {(s.exit.data["eip"], s.va >> 12): s.access.op
              for s in build_stories(program("demand"), "shadow") if s.exit is not None}
    nested = [s for s in build_stories(program("demand", mode="nested"), "nested")
              if s.kind == "nested"]
    assert [(s.va, s.access.op) for s in nested[:3]] == [
        (0x1000, "fetch"), (0x7FFFC, "write"), (0x22AC, "write")]
    compared = 0
    for s in nested:
        key = (s.exit.data["eip"], s.va >> 12)
        if key in shadow:
            assert s.access.op == shadow[key], hex(s.va)
            compared += 1
    assert compared >= 15
    assert {s.access.op for s in nested} == {"fetch", "write"}
    assert all(str(s.access) == s.access.op for s in nested)     # no user/kernel claimed


def test_a_nested_walk_that_carries_its_error_code_names_the_access_at_step_1():
    """Before the exit (the stepper at step 1) an EPT violation's read or
    write is "data access", unless the walk's own event says which."""
    from emu.story import FaultStory
    from emu.trace import Event
    walk = {"gpa": 0x7FFFC, "grid": [["data", "npte", 0x51FC, 0]]}
    bare = FaultStory(Event("nested_walk", 1171, va=0x7FFFC, step=1, data=walk))
    assert (bare.access.op, str(bare.access)) == ("data", "data access")
    for ec, op in ((2, "write"), (0, "read")):
        told = FaultStory(Event("nested_walk", 1171, va=0x7FFFC, step=1,
                                data={**walk, "error_code": ec}))
        assert (told.access.op, told.error_code) == (op, ec)
