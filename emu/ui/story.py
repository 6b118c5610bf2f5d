"""The stepper's fault stories, and one-line descriptions of trace events.

``find_story`` reads the shown trace events through the one fault-story
builder (``emu.story``: the events of each step, what each step did) and
returns the fault being handled, or the last one: its events by step, the
step reached, whether it is over.  Natively there is no VMM: a fault is one
hardware event, the exception delivered to the guest's handler.
"""

from __future__ import annotations

from ..hw.exceptions import describe_vector
from ..hw.paging import decode_flags
from ..story import FaultStory, StoryBuilder

Story = FaultStory      # the name the screen knew it by

WINDOW = 1500          # shown events scanned back for the current story

STEP_TITLES = {
    "shadow": {
        1: "TLB miss: the hardware walks the shadow table",
        2: "VM exit: the VMM walks the guest's table",
        3: "the VMM classifies the fault",
        4: "the VMM writes the shadow entry",
        5: "VM entry: the guest resumes",
        6: "the hardware walk succeeds: TLB fill",
    },
    "nested": {
        1: "TLB miss: the 2D walk finds no nested entry",
        2: "VM exit (EPT violation): it names the guest-physical address",
        3: "the PMap gives the machine page",
        4: "the VMM writes the nested entry (npte)",
        5: "VM entry: the instruction restarts",
        6: "the 2D walk succeeds: TLB fill",
    },
}

KIND_TEXT = {
    "hidden": "hidden fault: the guest maps it, the shadow does not (yet)",
    "true": "true fault: the guest's own table denies it",
    "dirty": "hidden fault on a clean page: the VMM sets the guest's D bit",
    "tracing": "tracing fault: a write to a write-protected guest page table",
    "unsync": "the first write to a guest page table: let it go out of sync",
    "wp-emulate": "CR0.WP=0 lets the kernel write a read-only page: emulate",
    "nested": "nested fault: guest-physical page without a nested entry",
    "cow": "a write to a page the VMM shares: copy it, break the sharing",
}


def kind_text(story: FaultStory) -> str:
    """Step 3's words for ``story``: they agree with the guest walk the
    panel shows in step 2 (a dirty fault's walk has already set D)."""
    if story.kind == "dirty":
        from .narrate import kind_line
        return kind_line(story)
    return KIND_TEXT.get(story.kind, story.kind or "")

# How the PMap found the machine page (``pmap_lookup``'s ``how``).
PMAP_HOW = {"resident": "resident", "allocated": "allocated now, zeroed",
            "swapped-in": "read back from the swap disk", "cow-broken":
            "a private copy: the sharing is broken",
            "rescued": "taken back when its write to the swap disk ended"}


def pmap_how(data: dict) -> str:
    how = data.get("how") or ("allocated" if data.get("allocated") else "resident")
    return PMAP_HOW.get(how, how)


def find_story(session) -> FaultStory | None:
    """The last fault among the shown events (None if none is in sight).
    Where #PF is not intercepted (natively, nested paging) the exceptions
    the hardware delivers are stories of their own, told in one piece."""
    builder = StoryBuilder(session.mode)
    for i, ev, extra in session.shown_events(session.shown - WINDOW):
        builder.feed(ev, i, extra)
    story = builder.last
    if story is not None and story.ended:
        story.done = False      # the run ended in it: the panel shows the step it reached
    return story


def story_visible(session, story: FaultStory | None) -> bool:
    """Show the panel while a fault is handled, and when the last motion
    stopped right after its last step."""
    if story is None:
        return False
    if not story.done:
        return True
    return story.last == session.shown - 1 and story.last >= session.shown_before


# --- one line per event -------------------------------------------------------------
def _hex(v) -> str:
    return f"{v:#010x}" if isinstance(v, int) else "-"


def _pn(v) -> str:
    return f"{v:#x}" if isinstance(v, int) else "-"


def access_text(error_code: int | None, fetch: bool = False) -> str:
    ec = error_code or 0
    what = "write" if ec & 2 else "fetch" if fetch else "read"
    return f"{what}, {'user' if ec & 4 else 'kernel'}"


def error_text(error_code: int | None) -> str:
    ec = error_code or 0
    bits = " ".join(n for b, n in ((1, "P"), (2, "W"), (4, "U"), (8, "RSVD")) if ec & b)
    why = "protection" if ec & 1 else "not present"
    return f"error code {ec:#x} [{bits or '-'}]: {why}"


def walk_lines(walk: dict | None, prefix: str, space: str) -> list[str]:
    """``prefix`` s (shadow) or g (guest); ``space`` of the entries: ma or pa."""
    if not walk:
        return []
    out = []
    for lv in walk["levels"]:
        name = lv["name"]
        idx = (walk["va"] >> (22 if name == "pde" else 12)) & 0x3FF
        value = lv["value_after"]
        out.append(f"{prefix}{name}[{idx:#05x}] at {space} {lv['entry_pa']:#010x} = "
                   f"{value:#010x}  {decode_flags(value, pde=name == 'pde')}")
    return out


def native_walk_lines(w) -> list[str]:
    """A ``paging.Walk`` (natively, of the guest's own table)."""
    if w is None:
        return []
    out = []
    for lv in w.levels:
        idx = (w.va >> (22 if lv.name == "pde" else 12)) & 0x3FF
        out.append(f"{lv.name}[{idx:#05x}] at pa {lv.entry_pa:#010x} = {lv.value_after:#010x}"
                   f"  {decode_flags(lv.value_after, pde=lv.name == 'pde')}")
    return out


def describe(ev) -> str:
    """One line for any trace event."""
    d, k = ev.data, ev.kind
    va = f" va {ev.va:#010x}" if ev.va is not None else ""
    if k == "vm_exit":
        ec = f", {error_text(d['error_code'])}" if d.get("error_code") is not None else ""
        gpa = f", gpa {d['gpa']:#010x}" if "gpa" in d else ""
        return f"VM exit ({d.get('reason')}) at eip {_hex(d.get('eip'))}{va}{ec}{gpa}"
    if k == "vm_entry":
        return f"VM entry ({d.get('action')})"
    if k.endswith("_fault"):
        extra = f" ppn {d['ppn']:#x}" if "ppn" in d else ""
        return f"{k.replace('_', ' ')}{va}{extra}"
    if k == "pmap_lookup":
        return f"PMap: ppn {d['ppn']:#x} -> mpn {d['mpn']:#x} ({pmap_how(d)})"
    if k == "shadow_fill":
        return (f"spte for{va} := {d['spte']:#010x}  {decode_flags(d['spte'])}"
                f"  (mpn {d['mpn']:#x})")
    if k == "nested_fill":
        return f"npte for ppn {d['ppn']:#x} := {d['npte']:#010x}  {decode_flags(d['npte'])}"
    if k == "tlb_fill":
        which = "itlb" if d.get("fetch") else "dtlb"
        rights = ("W" if d.get("writable") else "r") + (" U" if d.get("user") else " s")
        return f"TLB fill ({which}){va} -> pn {d['pn']:#x} ({rights})"
    if k in ("walk", "shadow_walk", "nested_walk", "guest_walk"):
        w = d.get("walk")
        if w is not None:
            result = "fault" if w.get("fault") else f"frame {_hex(w.get('frame'))}"
            return f"{k.replace('_', ' ')}{va}: {result}"
        frame = f" -> frame {_hex(d['frame'])}" if d.get("frame") is not None else ""
        return f"{k.replace('_', ' ')}{va}{frame}"
    if k == "deliver":
        what = describe_vector(d["vector"])
        return f"{what} delivered ({d.get('source')}) to the handler at {_hex(d.get('handler'))}"
    if k == "inject":
        return f"inject {describe_vector(d['vector'])}{va}, error code {d.get('error_code'):#x}"
    if k == "emulate":
        return (f"emulated the write{va}: entries {d.get('changed')} changed, "
                f"{d.get('dropped')} shadow entries dropped")
    if k == "cr3_load":
        return f"guest CR3 := {_hex(d.get('guest_cr3'))} (shadow root mpn {_pn(d.get('root'))})"
    if k == "invlpg":
        return f"INVLPG{va} ({d.get('dropped')} shadow entries dropped)"
    if k == "timer_tick":
        return f"timer tick {d.get('ticks')}"
    if k == "run_end":
        return f"run end: {d.get('outcome')}, {d.get('message')}"
    if k == "tlb_miss":
        return f"TLB miss ({'itlb' if d.get('fetch') else 'dtlb'}){va}"
    if k == "reclaim":
        what = "a zero page, dropped" if d.get("zero") else "to the swap disk"
        return f"reclaim: ppn {_pn(d.get('ppn'))} (mpn {_pn(d.get('mpn'))}) {what}"
    if k == "swap_in":
        return (f"swap-in: ppn {_pn(d.get('ppn'))} -> mpn {_pn(d.get('mpn'))} "
                f"(waited {d.get('waited', 0):,} cycles)")
    if k == "cow_break":
        return (f"copy-on-write break: ppn {_pn(d.get('ppn'))} leaves shared mpn "
                f"{_pn(d.get('shared'))} for mpn {_pn(d.get('mpn'))}")
    if k == "tables_freed":
        return (f"machine memory ran out: the VMM freed {d.get('pages')} shadow pages "
                f"({d.get('left')} left; they refill on the next faults)")
    if k == "page_shared":
        what = "a zero page" if d.get("zero") else "identical content"
        return (f"page shared: ppn {_pn(d.get('ppn'))} -> mpn {_pn(d.get('mpn'))} ({what}), "
                f"mpn {_pn(d.get('freed'))} freed")
    rest = " ".join(f"{key}={value}" for key, value in sorted(d.items()))
    return f"{k}{va} {rest}".rstrip()
