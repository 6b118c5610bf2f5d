"""Random guest kernels for the differential property tests.

``guest_programs()`` is a hypothesis strategy of ``GuestProgram``: assembly
text for a small kernel that builds random page tables and then performs a
random list of operations on a handful of test pages, so that a failing
example shrinks to a short, readable program.  The kernel:

* has up to three page directories (``pd0`` ..), which may share page
  tables, up to six page tables (``pt0`` ..), data frames with a code stub
  each (``frame0`` ..) and two 4 MiB frames; every directory maps the kernel
  (va 0..4 MiB, identity, through ``kpt``; global when CR4.PGE may be on);
* maps its test pages (``TEST_VPNS``: three 4 MiB regions, three pages in
  each) with random entries: 4 KiB and 4 MiB pages, user/supervisor,
  read-only/writable, present or not, G, A, D, PWT, PCD, AVL bits, reserved
  bit 21 in a 4 MiB entry, a directory used as a page table (recursive
  mapping), page tables and data frames mapped as data (aliases);
* performs reads, writes (dword and byte, page-crossing too, and ``rep
  stosd``, ``repne scasd`` and ``rep movsd`` of two dwords in a page --
  movs from another: the string paths), fetches (a
  call to the frame's stub) at CPL 0 and CPL 3 (an ``iret`` to a user stub
  that ends with ``int 0x80``); remaps (a write to a PDE or PTE); demotes a
  4 MiB page to a page table mapping the same frames and promotes it back;
  frees a page table (unlinks it) and reuses it as data; rewrites the
  immediate of a code stub and runs it again (self-modifying code); switches
  CR3; toggles CR0.WP and CR4.PGE;
* handles #PF in its own handler, which logs CR2 and the error code and
  either applies the fix prepared for this operation (sets P, U or W, or
  clears a reserved bit; then INVLPG when the old entry may be cached) and
  retries, or skips the operation;
* prints its log at the end and powers off.

The generator runs a reference model of paging and of the TLB rules over
the guest's memory (``pagingmodel.py``, written from the SDM independently
of ``emu.hw``):

* an operation that changes a paging entry leaves *stale* every test page
  whose translation may be cached from that entry.  Before the next access
  to a stale page the guest makes it fresh with one of the architecture's
  invalidation events, drawn at random: INVLPG; a CR3 load of the same
  value, or of another directory and back; INVLPG of an unrelated page
  (which empties the paging-structure caches); a CR4.PGE toggle (global
  and non-global entries stale alike); a CR4.PSE toggle; a CR0.WP toggle;
  paging turned off and on; or a #PF on the stale page itself, when the
  model proves the access faults whatever the TLB holds (then the fault is
  the only invalidation).  A global page stays stale across a CR3 load.  So
  no access depends on what a TLB of one size happens to hold, and every
  mode, with any TLB, must give the same result;
* a prediction: ``GuestProgram.expected_faults``, the (CR2, error code) of
  every #PF the guest will take, which the tests compare with the log of the
  native run (the model against the emulator's walker).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hypothesis import strategies as st
from pagingmodel import (
    MEM_MIB,
    PCD,
    PF_P,
    PF_RSVD,
    PF_U,
    PF_W,
    PS,
    PWT,
    RSVD_4M,
    A,
    D,
    G,
    Lookup,
    Model,
    P,
    TlbRules,
    U,
    W,
    Walk,
)

from emu.hw.paging import decode_flags

# the paging model's names, for the tests that import them from here
MODEL_NAMES = (MEM_MIB, PF_P, PF_RSVD, PF_U, PF_W, Lookup, Model, Walk)

# --- the physical layout ---------------------------------------------------------
MAIN_STACK = 0x70000            # the kernel's own stack (top)
KSTACK_TOP = 0x80000            # TSS esp0: traps from ring 3
USTACK_TOP = 0x90000            # the user stack (page 0x8F000 is user)
LOG = 0x98000                   # the log: (tag, a, b) triples
MAX_LOG = 0x8000
USER_TEXT = 0x40000             # user stubs (16 user pages)
USER_PAGES = 16
TABLES = 0x100000               # every paging structure lives at 1..2 MiB
PD_BASE = 0x100000              # page directories: pd0, pd1, pd2
PT_BASE = 0x110000              # page tables: pt0 .. pt5
KPT = 0x1F0000                  # the kernel's page table: va 0..4 MiB identity
KERNEL_MAP = 0x400000           # what kpt maps: the kernel reaches pa below this only
DATA_BASE = 0x200000            # 4 KiB data frames: frame0 .. frame7
SCRATCH = 0x300000              # empty pages that data patterns point to
LARGE = (0x400000, 0x800000)    # 4 MiB frames
N_PD, N_PT, N_DATA = 3, 6, 8
STUB = 0x800                    # offset of a frame's code stub
MAX_FAULTS = 64                 # the #PF handler gives up after this many
MAX_CYCLES = 20_000_000         # the budget of a generated guest

PDX_SET = (1, 2, 0x300)         # the test regions: va 0x00400000, 0x00800000, 0xc0000000
PTX_SET = (0, 1, 0x3FF)         # the test pages in each
TEST_VPNS = tuple((d << 10) | t for d in PDX_SET for t in PTX_SET)
SLOTS = tuple(sorted(set(PDX_SET) | set(PTX_SET)))   # entry indexes ops write

PDS = tuple(PD_BASE + k * 0x1000 for k in range(N_PD))
PTS = tuple(PT_BASE + j * 0x1000 for j in range(N_PT))
DATA = tuple(DATA_BASE + f * 0x1000 for f in range(N_DATA))
LARGE_SUBPAGES = tuple(base + t * 0x1000 for base in LARGE for t in PTX_SET)
STUB_PAGES = DATA + LARGE_SUBPAGES      # pages with a code stub at STUB


def pattern(page: int, off: int) -> int:
    """The initial dword at ``off`` of a data page: unique, P clear (as a
    paging entry it is not present) and naming an empty page inside RAM
    (so a walk that uses it after P is set stays inside RAM)."""
    return SCRATCH | ((page >> 12) & 0xFF) << 12 | off


def stub_value(page: int) -> int:
    """What the code stub of ``page`` leaves in eax."""
    return 0xC0DE0000 | (page >> 12) & 0xFFFF


DATA_OFFSETS = (0, 4, 0x7FC, 0xFFC)     # dwords a data page starts with
WRITES = ("write", "writeb", "smc", "stos")   # access kinds that store
UNRELATED_VA = 0x003FF000               # a kernel page: its INVLPG empties the PDE caches


def _stub_imm_offset() -> int:
    """Where the immediate of a stub's ``mov eax, imm32`` lies in its bytes
    (the project's own encoding)."""
    from emu.asm import assemble
    code = assemble("org 0\n    mov eax, 0x5a5a5a5a\n    ret\n", "<stub>").segments[0][1]
    return code.index(bytes.fromhex("5a5a5a5a"))


STUB_IMM = _stub_imm_offset()           # a self-modifying write stores here


def _sections() -> bool:
    """Does the assembler place code with NASM's ``section NAME start=``?
    (Checkouts from before it did take ``org``; the generator also runs
    against those, to replay a reverted fix.)"""
    from emu.asm import assemble
    from emu.errors import EmuError
    try:
        assemble("bits 32\nsection at_0 start=0\n    nop\n", "<probe>")
    except EmuError:
        return False
    return True


SECTIONS = _sections()


def _at(pa: int) -> str:
    """The directive that places what follows at ``pa``."""
    return f"section at_{pa:x} start={pa:#x}" if SECTIONS else f"org {pa:#x}"


# Known emulator bugs the generator steers around (each has a strict xfail
# test in tests/test_properties.py; remove the name when the bug is fixed).
# Fixed since: "wp-emulate-ro-pde" (shadow paging recursed on a write that
# CR0.WP=0 allows through a read-only PDE; now tests/regressions/wp0_*.s).
AVOID: set[str] = set()



# --- the program ------------------------------------------------------------------
@dataclass
class GuestProgram:
    """One generated guest: its source and what the generator expects."""

    source: str
    options: list[str]                  # emu run options (also in the source)
    expected_faults: list[tuple[int, int]] = field(default_factory=list)
    ops: int = 0
    events: dict = field(default_factory=dict)   # invalidation events that freshened a page
    plan: dict | None = field(default=None, repr=False)   # what it was compiled from
    garbage: bool = False               # compiled by GarbageCompiler

    @property
    def name(self) -> str:
        return "prop_" + hashlib.sha256(self.source.encode()).hexdigest()[:10]

    def config_fields(self) -> dict:
        """The options as ``Config`` fields."""
        out = {}
        it = iter(self.options)
        for opt in it:
            out[opt[2:].replace("-", "_")] = (lambda v: int(v) if v.isdigit() else v)(next(it))
        return out


def _entry_text(value: int, pde: bool) -> str:
    flags = decode_flags(value, pde=pde)
    if value & P and pde and value & PS:
        return f"{value:#010x}   ; 4 MiB frame {value & 0xFFC00000:#x}  {flags}"
    return f"{value:#010x}   ; -> {value & 0xFFFFF000:#x}  {flags}"


def _table_name(pa: int) -> str:
    names = {KPT: "kpt"}
    names.update({pd: f"pd{k}" for k, pd in enumerate(PDS)})
    names.update({pt: f"pt{j}" for j, pt in enumerate(PTS)})
    names.update({f: f"frame{i}" for i, f in enumerate(DATA)})
    page = pa & 0xFFFFF000
    if page in names:
        return names[page]
    return f"page {page:#x}"

class Compiler:
    """Turns a plan (tables + operations) into assembly, running the model."""

    TITLE = "the differential property tests"

    def __init__(self, plan: dict):
        self.plan = plan
        self.pge = plan["pge"]
        self.wp = plan["wp"]
        # Kernel entries are global if CR4.PGE may ever be on.
        self.kernel_global = self.pge or any(op[0] == "pgeflip" for op in plan["ops"])
        self.cr3 = PDS[0]
        self.k: list[str] = []          # kernel text (the operations)
        self.u: list[str] = []          # user text (the user stubs)
        self.faults: list[tuple[int, int]] = []
        self.events: dict[str, int] = {}   # invalidation events that freshened a stale page
        self.model = Model(self._initial_memory())
        self.tlb = TlbRules(self.model, TEST_VPNS)
        self._refresh_globals()

    @property
    def stale(self) -> set[int]:
        return self.tlb.stale

    # --- the initial memory -------------------------------------------------------
    def _initial_memory(self) -> dict[int, bytearray]:
        pages: dict[int, bytearray] = {}

        def put(pa: int, value: int) -> None:
            pg = pages.setdefault(pa >> 12, bytearray(4096))
            pg[pa & 0xFFF:(pa & 0xFFF) + 4] = value.to_bytes(4, "little")
        kflags = P | W | (G if self.kernel_global else 0)
        for i in range(1024):
            user = USER_TEXT >> 12 <= i < (USER_TEXT >> 12) + USER_PAGES or \
                i == (USTACK_TOP >> 12) - 1
            put(KPT + 4 * i, (i << 12) | kflags | (U if user else 0))
        # With CR4.PGE the kernel's TLB entries are global and may outlive a
        # CR3 switch: whether a walk through another directory's kernel PDE
        # happens (and sets its A bit) depends on the TLB's size, which the
        # architecture leaves open (and a VMM that splinters 4 MiB pages
        # changes).  So that PDE starts accessed.
        sane = KPT | P | W | U | (A if self.kernel_global else 0)
        for pd, kernel_pde in zip(PDS, self.plan.get("kernel_pdes", (sane,) * N_PD)):
            put(pd, kernel_pde)
        for k, entries in enumerate(self.plan["pdes"]):
            for d, value in zip(PDX_SET, entries):
                put(PDS[k] + 4 * d, value)
        for j, entries in enumerate(self.plan["ptes"]):
            for t, value in zip(PTX_SET, entries):
                put(PTS[j] + 4 * t, value)
        for page in STUB_PAGES:
            for off in DATA_OFFSETS:
                put(page + off, pattern(page, off))
        self.initial = {pn: bytes(pg) for pn, pg in pages.items()}
        return pages

    # --- the TLB rules (pagingmodel.TlbRules) ----------------------------------------
    def _walk(self, va: int, write=False, user=False) -> Walk:
        return self.model.walk(self.cr3, va, write, user, self.wp)

    def _refresh_globals(self) -> None:
        self.tlb.refresh_globals(self.cr3, self.pge)

    def _write(self, pa: int, data: bytes) -> None:
        self._write_bytes([pa + i for i in range(len(data))], data)

    def _write_bytes(self, pas, data) -> None:
        self.tlb.before_write(self.cr3, {pa & ~3 for pa in pas})
        for pa, b in zip(pas, data):
            self.model.write(pa, bytes([b]))
        self._refresh_globals()

    def _load_cr3(self, pd: int) -> None:
        old, self.cr3 = self.cr3, pd
        self.tlb.load_cr3(old, pd, self.pge)

    def _invlpg(self, vpn: int) -> None:
        self.tlb.invlpg(vpn, self.cr3, self.pge)

    def _flush_all(self) -> None:
        self.tlb.flush_all(self.cr3, self.pge)

    def _count(self, how: str) -> None:
        self.events[how] = self.events.get(how, 0) + 1

    def _emit_event(self, how: str) -> None:
        """One invalidation event other than INVLPG (see ``EVENTS``)."""
        if how == "cr3":
            self.k += ["    mov eax, cr3                ; invalidate: reload CR3",
                       "    mov cr3, eax"]
            self._load_cr3(self.cr3)
        elif how == "cr3-other":
            here = PDS.index(self.cr3)
            other = (here + 1) % N_PD
            self.k += [f"    mov eax, PD{other}                ; invalidate: CR3 to pd{other} "
                       "and back", "    mov cr3, eax", f"    mov eax, PD{here}",
                       "    mov cr3, eax"]
            self._load_cr3(PDS[other])
            self._load_cr3(PDS[here])
        elif how == "invlpg-other":
            self.k.append(f"    invlpg [{UNRELATED_VA:#010x}]       ; invalidate: INVLPG elsewhere "
                          "(every cached PDE goes)")
            self.tlb.invlpg(-1, self.cr3, self.pge)
        elif how in ("pge", "pse", "wp", "pg"):
            reg, bit = {"pge": ("cr4", "CR4_PGE"), "pse": ("cr4", "CR4_PSE"),
                        "wp": ("cr0", "CR0_WP"), "pg": ("cr0", "CR0_PG")}[how]
            self.k += [f"    mov eax, {reg}                ; invalidate all: toggle {bit} twice",
                       f"    xor eax, {bit}", f"    mov {reg}, eax",
                       f"    xor eax, {bit}", f"    mov {reg}, eax"]
            self._flush_all()
        else:
            raise ValueError(f"unknown invalidation event {how!r}")

    def _emit_invalidate(self, vpn: int, how: str) -> None:
        """Make stale ``vpn`` fresh: by ``how`` first, then INVLPG if it is
        still stale (a global page after a CR3 load)."""
        if how not in ("invlpg", "pf"):
            self._emit_event(how)
            if vpn not in self.tlb.stale:
                self._count(how)
        if vpn in self.tlb.stale:
            self.k.append(f"    invlpg [{vpn << 12:#010x}]")
            self._invlpg(vpn)
            self._count("invlpg")

    # --- operations -------------------------------------------------------------------
    def compile(self) -> GuestProgram:
        for n, op in enumerate(self.plan["ops"], 1):
            getattr(self, "op_" + op[0])(n, *op[1:])
        return GuestProgram(self._source(), self._options(), self.faults,
                            len(self.plan["ops"]), dict(self.events), self.plan,
                            isinstance(self, GarbageCompiler))

    def op_switch(self, n: int, k: int) -> None:
        self.k += [f"op{n}:                            ; switch to address space {k}",
                   f"    mov eax, PD{k}", "    mov cr3, eax"]
        self._load_cr3(PDS[k])

    def op_flush(self, n: int, how: str, slot: int) -> None:
        vpn = TEST_VPNS[slot % len(TEST_VPNS)]
        self.k.append(f"op{n}:")
        if how == "invlpg":
            self.k.append(f"    invlpg [{vpn << 12:#010x}]")
            self._invlpg(vpn)
        else:
            self._emit_event(how)

    def op_wp(self, n: int) -> None:
        self.wp = not self.wp
        self.k += [f"op{n}:                            ; CR0.WP := {int(self.wp)}",
                   "    mov eax, cr0", "    xor eax, CR0_WP", "    mov cr0, eax"]
        self._flush_all()

    def op_pgeflip(self, n: int) -> None:
        self.pge = not self.pge
        self.k += [f"op{n}:                            ; CR4.PGE := {int(self.pge)}",
                   "    mov eax, cr4", "    xor eax, CR4_PGE", "    mov cr4, eax"]
        self._flush_all()

    def _after_write(self, inval: str) -> None:
        """What follows a change of entries: INVLPG of every stale page, an
        event, or nothing yet (stale pages are made fresh before their next
        access)."""
        if inval == "invlpg":
            for vpn in sorted(self.tlb.stale):
                self.k.append(f"    invlpg [{vpn << 12:#010x}]")
                self._invlpg(vpn)
        elif inval != "none":
            self._emit_event(inval)

    def _set_entry(self, pa: int, value: int, pde: bool, why: str = "") -> None:
        self.k.append(f"    mov dword [{pa:#x}], {_entry_text(value, pde)}{why}")
        self._write(pa, value.to_bytes(4, "little"))

    def op_remap(self, n: int, level: str, table: int, slot: int, value: int,
                 inval: str) -> None:
        if level == "pde":
            d = PDX_SET[slot % len(PDX_SET)]
            pa = PDS[table % N_PD] + 4 * d
        else:
            t = PTX_SET[slot % len(PTX_SET)]
            pa = PTS[table % N_PT] + 4 * t
        self.k.append(f"op{n}:                            ; remap: {_table_name(pa)}"
                      f"[{(pa & 0xFFF) >> 2:#x}]")
        self._set_entry(pa, value, level == "pde")
        self._after_write(inval)

    def op_demote(self, n: int, k: int, slot: int, j: int, large: int, rights: int,
                  inval: str) -> None:
        """A 4 MiB page becomes a page table mapping the same frames (a
        region that is no 4 MiB page now gets one frame's pages)."""
        d = PDX_SET[slot % len(PDX_SET)]
        pde_pa, pt = PDS[k % N_PD] + 4 * d, PTS[j % N_PT]
        pde = self.model.rd32(pde_pa)
        if pde & P and pde & PS and not pde & RSVD_4M:
            frame, rights = pde & 0xFFC00000, pde & (P | W | U | A | D | G | PWT | PCD)
        else:
            frame = LARGE[large % len(LARGE)]
        self.k.append(f"op{n}:                            ; demote: pd{k % N_PD}[{d:#x}] "
                      f"4 MiB {frame:#x} -> pt{j % N_PT}, 4 KiB pages")
        for t in PTX_SET:
            self._set_entry(pt + 4 * t, frame + (t << 12) | rights, False)
        self._set_entry(pde_pa, pt | (rights & (P | W | U | A | PWT | PCD)), True)
        self._after_write(inval)

    def op_promote(self, n: int, k: int, slot: int, large: int, rights: int,
                   inval: str) -> None:
        """A page table's region becomes one 4 MiB page: the frame its first
        PTE maps when that is a 4 MiB frame (a demoted page), else a drawn one."""
        d = PDX_SET[slot % len(PDX_SET)]
        pde_pa = PDS[k % N_PD] + 4 * d
        pde = self.model.rd32(pde_pa)
        frame = LARGE[large % len(LARGE)]
        if pde & P and not pde & PS and TABLES <= pde & 0xFFFFF000 < KERNEL_MAP:
            pte = self.model.rd32(pde & 0xFFFFF000)
            if pte & P and pte & 0xFFFFF000 in LARGE:
                frame, rights = pte & 0xFFFFF000, pte & pde & (P | W | U) | pte & (A | D | G)
        self.k.append(f"op{n}:                            ; promote: pd{k % N_PD}[{d:#x}] "
                      f"-> 4 MiB {frame:#x}")
        self._set_entry(pde_pa, frame | PS | rights, True)
        self._after_write(inval)

    def op_recycle(self, n: int, j: int, values: tuple[int, ...], inval: str) -> None:
        """Free a page table (every PDE that links it is cleared) and reuse
        its page as data."""
        pt = PTS[j % N_PT]
        self.k.append(f"op{n}:                            ; free pt{j % N_PT}, reuse it as data")
        for pd in PDS:
            for d in PDX_SET:
                pde = self.model.rd32(pd + 4 * d)
                if pde & P and not pde & PS and pde & 0xFFFFF000 == pt:
                    self._set_entry(pd + 4 * d, pde & ~P, True)
        self._after_write(inval)
        for t, value in zip(PTX_SET, values):
            self.k.append(f"    mov dword [{pt + 4 * t:#x}], {value:#010x}")
            self._write(pt + 4 * t, value.to_bytes(4, "little"))

    def op_smc(self, n: int, frame: int, value: int) -> None:
        """The kernel rewrites the immediate of a frame's code stub through
        its identity map (the frames below 4 MiB)."""
        pa = DATA[frame % N_DATA] + STUB + STUB_IMM
        self.k += [f"op{n}:                            ; self-modifying code: "
                   f"frame{frame % N_DATA}'s stub now returns {value:#010x}",
                   f"    mov dword [{pa:#x}], {value:#010x}"]
        self._write(pa, value.to_bytes(4, "little"))

    def _target(self, vslot: int) -> int:
        """The test vpn of ``vslot``; past the last one: a stale page if
        there is one (what a remap left stale is what the events are for)."""
        if vslot >= len(TEST_VPNS) and self.tlb.stale:
            return min(self.tlb.stale)
        return TEST_VPNS[vslot % len(TEST_VPNS)]

    def op_edit(self, n: int, vslot: int, level: str, value: int, inval: str) -> None:
        """Rewrite the PTE (or the PDE) that maps a test page now."""
        vpn = TEST_VPNS[vslot % len(TEST_VPNS)]
        lk = self.model.lookup(self.cr3, vpn << 12)
        pa, _ = lk.path[-1] if level == "pte" else lk.path[0]
        pde = pa == lk.path[0][0]
        if not pde:
            value &= ~PS                        # (a 4 MiB entry's bits in a PTE)
        if not TABLES <= pa < KERNEL_MAP or pa & 0xFFFFF000 == KPT or \
                (pa & 0xFFFFF000 in PDS and pa & 0xFFF == 0):
            self.k.append(f"op{n}:                            ; (no entry to edit)")
            return
        self.k.append(f"op{n}:                            ; edit the "
                      f"{'PDE' if pde else 'PTE'} of va {vpn << 12:#010x}: "
                      f"{_table_name(pa)}[{(pa & 0xFFF) >> 2:#x}]")
        self._set_entry(pa, value, pde)
        self._after_write(inval)

    def op_stale(self, n: int, vslot: int, level: str, value: int, same_rights: bool,
                 kind: str, cpl: int, fault: str, inval: str) -> None:
        """The pattern the events are for: read a test page (its
        translation may now be cached), edit its PTE or PDE with no
        invalidation, then access it after the event ``inval`` (or take a
        #PF on it as the event).  ``same_rights``: the new entry keeps the
        old one's R/W and U/S (so an access both refuse can fault)."""
        # a page mapped now (for a #PF as the event: one its rights limit)
        mapped = [i for i, v in enumerate(TEST_VPNS)
                  if self.model.lookup(self.cr3, v << 12).translation is not None]
        limited = [i for i in mapped
                   if not all(self.model.lookup(self.cr3, TEST_VPNS[i] << 12).translation[1:])]
        choice = limited if inval == "pf" and limited else mapped
        if choice:
            vslot = choice[vslot % len(choice)]
        vpn = TEST_VPNS[vslot % len(TEST_VPNS)]
        self.op_access(f"{n}a", "read", 0, vslot, "0x0", 0, 0, 0, "skip", "invlpg")
        if same_rights:
            lk = self.model.lookup(self.cr3, vpn << 12)
            pa, old = lk.path[-1] if level == "pte" else lk.path[0]
            value = value & ~(W | U) | old & (W | U) | P
        self.op_edit(f"{n}b", vslot, level, value, "none")
        self.op_access(f"{n}c", kind, cpl, vslot, "0x0", 0, 0, value, fault, inval)

    def op_access(self, n: int, kind: str, cpl: int, vslot: int, off: str, slot: int,
                  byte: int, value: int, fault: str, inval: str) -> None:
        if kind == "movs" or (kind == "stos" and self._crossing_stos(vslot, off)):
            return self._op_string(n, kind, cpl, vslot, off, slot, byte, value, fault,
                                   inval)
        return self._op_plain(n, kind, cpl, vslot, off, slot, byte, value, fault, inval)

    def _op_plain(self, n: int, kind: str, cpl: int, vslot: int, off: str, slot: int,
                  byte: int, value: int, fault: str, inval: str) -> None:
        vpn = self._target(vslot)
        user = cpl == 3
        if inval == "pf":
            kind, user = self._faulting_kind(vpn, kind, user, off, slot, byte)
        # A write that would reach the kernel, or a fetch that would not land
        # on a code stub, is tried again as a read.
        for kind in dict.fromkeys((kind, "read")):  # noqa: B020 (the last try is kept)
            snap = self._snapshot()
            va, size = self._place(vpn, kind, off, slot, byte)
            pages = sorted({va >> 12, ((va + size - 1) & 0xFFFFFFFF) >> 12})
            for v in pages:
                if v in self.tlb.stale:             # the TLB rules
                    if inval == "pf" and len(pages) == 1 and self.tlb.sure_fault(
                            self.cr3, va, kind in WRITES, user, self.wp) is not None:
                        self._count("pf")           # the #PF below is the event
                    else:
                        self._emit_invalidate(v, inval)
            fix, done = self._run_access(va, size, kind, user, fault)
            if done is None or (self._allowed(kind, done) and
                                not self._known_bug(kind, va, size, user) and
                                not (kind == "stos" and self._on_own_path([va], done))):
                break
            self._restore(snap)
        past = self._past_ram(pages)
        if past is not None:
            # An entry the guest's own writes made (a data write through an
            # alias of a table), perhaps with the handler's fix, maps a page
            # of the access past RAM: the access would end the run with a
            # bus error in every mode (on either page of a crossing one,
            # whatever the other does).  Not this property's.
            self._restore(snap)
            self.k.append(f"op{n}:                            ; (no access: va "
                          f"{past[0] << 12:#010x} maps pa {past[1] << 12:#x}, past RAM)")
            return
        self._emit_access(n, kind, user, va, size, value, fix)
        if done is not None and kind in WRITES:
            data = (value.to_bytes(4, "little") * max(size // 4, 1))[:size]
            self._write_bytes(done, data)

    def _crossing_stos(self, vslot: int, off: str) -> bool:
        """Does a ``rep stosd`` drawn at ``off`` cross into the next page (a
        data page followed by a test page)?"""
        vpn = self._target(vslot)
        probe = self._walk(vpn << 12)
        table = not probe.fault and TABLES <= probe.pa & 0xFFFFF000 < TABLES + 0x100000
        return off in ("cross", "0xffc") and not table and (vpn + 1) & 0xFFFFF in TEST_VPNS

    def _op_string(self, n, kind: str, cpl: int, vslot: int, off: str, slot: int,
                   byte: int, value: int, fault: str, inval: str) -> None:
        """A ``rep`` of two dwords the CPU runs element by element: ``rep
        movsd`` from a test page to another (or within one, never
        overlapping), or a ``rep stosd`` whose second element is on the
        next page.  Each element walks its source (read) and its
        destination (write) in order, and may fault after the elements
        before it stored: the handler fixes the first fault and the rep
        goes on from the faulting element, or skips the rest.  Where it
        may not stay (a store to the kernel or to an entry of its own
        walks, a page past RAM), a read."""
        user = cpl == 3
        dst_vpn = self._target(vslot)
        if kind == "stos":
            dst, src = (dst_vpn << 12) + 0xFFC, None
        else:
            src = (TEST_VPNS[value % len(TEST_VPNS)] << 12) + (0x10 if byte == 0 else 0xFF0)
            dst = self._place(dst_vpn, "stos", off, slot, byte)[0]
            if self._crossing_stos(vslot, off):
                dst = (dst_vpn << 12) + 0xFFC
        if inval == "pf":
            inval = "invlpg"            # (the #PF event is for one-page accesses)
        elements = [([] if src is None else [(src + 4 * i, False)]) + [(dst + 4 * i, True)]
                    for i in range(2)]
        vas = [va for el in elements for va, _ in el]
        pages = sorted({va >> 12 for va in vas})
        snap = self._snapshot()
        for v in pages:
            if v in self.tlb.stale:
                self._emit_invalidate(v, inval)
        fix, done = self._run_elements(elements, user, fault)
        written = [pa for el in done for pa in el[-1]]
        if not self._allowed("write", written) or self._on_own_path(vas, written) or \
                self._past_ram(pages) is not None:
            self._restore(snap)
            return self._op_plain(n, "read", cpl, vslot, off, slot, byte, value, fault,
                                  inval)
        self._emit_access(n, kind, user, dst, 8, value, fix, src)
        for el in done:                 # the elements stored, in order
            data = value.to_bytes(4, "little") if src is None else \
                bytes(self.model.page(pa >> 12)[pa & 0xFFF] for pa in el[0])
            self._write_bytes(el[-1], data)

    def _on_own_path(self, vas, written) -> bool:
        """Would a string store of several elements write an entry of the
        walk of one of ``vas``?  Its next element would use the entry
        cached or the new one, as a TLB happens to hold it: not this
        property's."""
        words = {pa & ~3 for pa in written}
        return any(pa in words for va in vas
                   for pa, _ in self.model.lookup(self.cr3, va).path)

    def _run_elements(self, elements, user: bool, fault: str):
        """Model a rep's elements, each a list of (va, write) dwords walked
        in order, and the #PF handler: the fix prepared (or None) and, for
        each element that completed, the physical addresses of each of its
        dwords' bytes.  A fault the handler fixes is retried from its
        element; one it skips ends the rep there."""
        armed = None
        done: list = []
        k = 0
        while k < len(elements):
            failed = None
            for va, write in elements[k]:
                w = self._walk(va, write, user)
                if w.fault:
                    failed = (va, w)
                    break
            if failed is None:
                done.append([[self._walk(va + i, write, user).pa for i in range(4)]
                             for va, write in elements[k]])
                k += 1
                continue
            va, w = failed
            others = sorted({q & ~0xFFF for el in elements for q, _ in el
                             if q >> 12 != va >> 12})
            fixed = self._handler(va, w, others, armed, fault)
            if fixed is None:
                return armed, done
            armed = fixed
        return armed, done

    def _past_ram(self, vpns) -> tuple[int, int] | None:
        """(vpn, pn) of the first of ``vpns`` whose entries now map a page
        past RAM (present, whatever its rights), or None."""
        for v in vpns:
            t = self.model.lookup(self.cr3, v << 12).translation
            if t is not None and t[0] >= MEM_MIB << 8:
                return v, t[0]
        return None

    def _faulting_kind(self, vpn: int, kind: str, user: bool, off: str, slot: int,
                       byte: int) -> tuple[str, bool]:
        """For a #PF as the invalidation of stale ``vpn``: the first access
        (of the drawn one, then others) that faults whatever the TLB holds."""
        if vpn not in self.tlb.stale:
            return kind, user
        for k, u in ((kind, user), ("write", user), ("read", user),
                     ("write", not user), ("read", not user)):
            va, size = self._place(vpn, k, off, slot, byte)
            if va >> 12 == (va + size - 1) >> 12 and self.tlb.sure_fault(
                    self.cr3, va, k in WRITES, u, self.wp) is not None:
                return k, u
        return kind, user

    def _place(self, vpn: int, kind: str, off: str, slot: int, byte: int) -> tuple[int, int]:
        """The va and size of an access to ``vpn``: page tables get
        entry-sized writes at a slot, data pages the dwords they start
        with, a fetch goes to the code stub, a self-modifying write to the
        stub's immediate."""
        probe = self._walk(vpn << 12)
        target = None if probe.fault else probe.pa & 0xFFFFF000
        size = {"writeb": 1, "stos": 8, "scas": 8}.get(kind, 4)
        low = byte if size == 1 else 0
        if kind == "fetch":
            return (vpn << 12) + STUB, 1
        if kind == "smc":
            return (vpn << 12) + STUB + STUB_IMM, 4
        if target is not None and TABLES <= target < TABLES + 0x100000:
            return (vpn << 12) + min(4 * SLOTS[slot % len(SLOTS)] + low, 0x1000 - size), size
        if kind in ("stos", "scas"):    # (two dwords in one page: a fault comes first)
            return (vpn << 12) + min(int(off, 16) if off != "cross" else 0xFF8, 0xFF8), size
        if off == "cross":
            nxt = (vpn + 1) & 0xFFFFF
            return (vpn << 12) + (0xFFE if nxt in TEST_VPNS else 0xFFC), size
        return (vpn << 12) + int(off, 16) + low, size

    def _allowed(self, kind: str, pas: list[int]) -> bool:
        """May the access that reached ``pas`` stay?  Writes must not reach
        the kernel (its code, data, stacks, page table, a directory's kernel
        entry) nor a code stub, but for a self-modifying write to its
        immediate; a fetch must run a code stub."""
        if kind == "fetch":
            return pas[0] & 0xFFFFF000 in STUB_PAGES
        if kind == "read" or kind == "scas":
            return True
        if kind == "smc":
            page = pas[0] & 0xFFFFF000
            return page in STUB_PAGES and pas == [page + STUB + STUB_IMM + i for i in range(4)]
        for pa in pas:
            page, off = pa & 0xFFFFF000, pa & 0xFFF
            if pa < TABLES or page == KPT or (page in PDS and off < 4):
                return False
            if page >= TABLES + 0x100000 and page not in STUB_PAGES:
                return False
            if page in STUB_PAGES and STUB <= off < STUB + 16:
                return False
        return True

    def _known_bug(self, kind: str, va: int, size: int, user: bool) -> bool:
        """Does the access hit a known emulator bug that ``AVOID`` lists?"""
        if "wp-emulate-ro-pde" in AVOID and kind in WRITES and not user and not self.wp:
            for i in (0, size - 1):
                w = self._walk((va + i) & 0xFFFFFFFF, True, False)
                if not w.fault and not self.model.rd32(w.path[0]) & W:
                    return True
        return False

    def _snapshot(self):
        tlb = self.tlb
        return ({pn: bytearray(pg) for pn, pg in self.model.pages.items()},
                len(self.k), len(self.faults), dict(self.events), self.cr3,
                (set(tlb.stale), set(tlb.maybe_global),
                 {v: set(s) for v, s in tlb.old.items()},
                 {v: set(s) for v, s in tlb.old_pdes.items()}))

    def _restore(self, snap) -> None:
        pages, nk, nf, self.events, self.cr3, rules = snap
        self.model.pages = pages
        del self.k[nk:]
        del self.faults[nf:]
        tlb = self.tlb
        tlb.model = self.model
        tlb.stale, tlb.maybe_global, tlb.old, tlb.old_pdes = rules

    def _run_access(self, va: int, size: int, kind: str, user: bool, fault: str):
        """Model the access and the #PF handler: returns the fix prepared for
        the access (or None) and the physical address of each byte it
        reached (None if the handler skipped it)."""
        write = kind in WRITES
        pages = [va]
        end = (va + size - 1) & 0xFFFFFFFF
        if end >> 12 != va >> 12:
            pages.append(end & 0xFFFFF000)
        armed = None
        while True:
            failed = None
            for p in pages:
                w = self._walk(p, write, user)
                if w.fault:
                    failed = (p, w)
                    break
            if failed is None:
                return armed, [self._walk((va + i) & 0xFFFFFFFF, write, user).pa
                               for i in range(size)]
            p, w = failed
            fixed = self._handler(p, w, [q for q in pages if q != p], armed, fault)
            if fixed is None:
                return armed, None                  # skipped
            armed = fixed

    def _handler(self, va: int, w: Walk, others: list[int], armed, fault: str):
        """The guest's #PF handler on a fault at ``va`` (walk ``w``) of an
        access whose other pages are ``others``: the fault logged, then the
        fix prepared applied -- the new armed fix, (fixes, INVLPG cr2) --
        or the access skipped (None): a second fault, a skip drawn, or a
        fix the handler cannot make or that would leave another page of
        the access stale."""
        self.faults.append((va, w.ec))
        self.tlb.page_fault(va >> 12, self.cr3, self.pge)   # drops va's entries
        if armed is not None or fault != "fix" or not self._fix_ok(w.fixes) or \
                self._fix_stales(w.fixes, others):
            return None
        for e_pa, and_, or_ in w.fixes:
            old = self.model.rd32(e_pa)
            self._write(e_pa, ((old & and_) | or_).to_bytes(4, "little"))
        # The handler invalidates cr2 only when the fixed entry may be
        # cached: a rights fix, not a P fix.
        inv = va >> 12 in self.tlb.stale
        if inv:
            self._invlpg(va >> 12)
        return w.fixes, inv

    def _fix_stales(self, fixes, others: list[int]) -> bool:
        """Would the fix leave another page of the access stale (its
        cached entries include a fixed one)?  The retry would use it."""
        for q in others:
            lk: Lookup = self.model.lookup(self.cr3, q)
            if any(pa == e_pa for pa, _ in lk.path[:lk.cacheable] for e_pa, _, _ in fixes):
                return True
        return False

    @staticmethod
    def _fix_ok(fixes) -> bool:
        # The handler writes the entry at its physical address through the
        # kernel's identity map, which covers 0..4 MiB only: an entry in a
        # table a remap placed higher (a 4 MiB frame used as a page table)
        # is out of its reach.
        for e_pa, _, _ in fixes:
            page = e_pa & 0xFFFFF000
            if page == KPT or e_pa < TABLES or e_pa >= KERNEL_MAP or \
                    (page in PDS and e_pa & 0xFFF == 0):
                return False
        return bool(fixes)

    def _emit_access(self, n, kind, user, va, size, value, fix, src=None) -> None:
        """The operation's text: the fix it prepares, then the access (at
        CPL 3: in a user stub).  ``src``: a movs's source."""
        who = "user" if user else "supervisor"
        w = self._walk(va)
        where = "" if w.fault else f" (pa {w.pa:#x}, {_table_name(w.pa)})"
        lines = [f"op{n}:                            ; {who} {kind} at va {va:#010x}{where}",
                 f"    mov dword [resume], op{n}_done"]
        fixes, inv = fix or ((), False)
        for i, (e_pa, and_, or_) in enumerate(fixes, 1):
            lines += [f"    mov dword [fix{i}], {e_pa:#x}           ; on #PF: fix "
                      f"{_table_name(e_pa)}[{(e_pa & 0xFFF) >> 2:#x}]",
                      f"    mov dword [fix{i}_and], {and_ & 0xFFFFFFFF:#x}",
                      f"    mov dword [fix{i}_or], {or_:#x}"]
        if inv:
            lines.append("    mov dword [fix_inv], 1          ; then INVLPG cr2")
        if kind == "read":
            insn = [f"    mov eax, [{va:#010x}]"]
        elif kind in ("write", "smc"):
            insn = [f"    mov dword [{va:#010x}], {value:#010x}"]
        elif kind == "writeb":
            insn = [f"    mov byte [{va:#010x}], {value & 0xFF:#04x}"]
        elif kind == "stos":            # the string paths: a rep of two dwords
            insn = [f"    mov edi, {va:#010x}", f"    mov eax, {value:#010x}",
                    f"    mov ecx, {size // 4}", "    cld", "    rep stosd"]
        elif kind == "movs":
            insn = [f"    mov esi, {src:#010x}", f"    mov edi, {va:#010x}",
                    f"    mov ecx, {size // 4}", "    cld", "    rep movsd"]
        elif kind == "scas":            # ... and a compare: where it stopped, and ZF
            second = self._walk(va + 4)     # (looking for the second dword: found, mostly)
            if not second.fault and value & 1:
                value = self.model.rd32(second.pa)
            insn = [f"    mov edi, {va:#010x}", f"    mov eax, {value:#010x}",
                    f"    mov ecx, {size // 4}", "    cld", "    repne scasd",
                    "    setz al", "    shl ecx, 8", "    or eax, ecx"]
        else:
            insn = [f"    call {va:#010x}"]
        if user:
            lines += ["    push USER_SS", "    push USTACK_TOP",
                      "    push EFLAGS_BASE | EFLAGS_IF", "    push USER_CS",
                      f"    push u_op{n}", "    iret"]
            self.u += [f"u_op{n}:"] + insn + ["    int 0x80"]
        else:
            lines += insn
            if kind in ("read", "fetch", "scas"):
                lines.append("    call log_eax")
        lines.append(f"op{n}_done:")
        self.k += lines

    # --- the text -----------------------------------------------------------------------
    def _options(self) -> list[str]:
        p = self.plan
        return ["--mem-mib", str(MEM_MIB), "--tlb-entries", str(p["tlb"][0]),
                "--tlb-ways", str(p["tlb"][1]), "--tlb-kind", p["tlb"][2],
                "--tlb-large", str(p["tlb"][3]), "--max-cycles", str(p.get("max_cycles",
                                                                          MAX_CYCLES))]

    def _source(self) -> str:
        p = self.plan
        out = [
            f"; generated by tests/guestgen.py ({self.TITLE})",
            f"; {len(p['ops'])} operations; CR4.PGE={int(p['pge'])}, CR0.WP={int(p['wp'])}, "
            f"timer period {p['timer']}",
            "; emu-options: " + " ".join(self._options()),
            *(["bits 32"] if SECTIONS else []),
            '%include "kernel.inc"',
            "",
            f"MAIN_STACK  equ {MAIN_STACK:#x}",
            f"KSTACK_TOP  equ {KSTACK_TOP:#x}",
            f"USTACK_TOP  equ {USTACK_TOP:#x}",
            f"LOG         equ {LOG:#x}",
            f"KPT         equ {KPT:#x}",
            *[f"PD{k}         equ {pd:#x}" for k, pd in enumerate(PDS)],
            "",
            "org 0x1000",
            "_start:",
            "    mov esp, MAIN_STACK",
            "    call idt_init",
            "    mov dword [log_ptr], LOG",
            "    mov ecx, 0                      ; kpt: va 0..4 MiB, identity",
            ".kpt:",
            "    mov eax, ecx",
            "    shl eax, 12",
            f"    or eax, PTE_P | PTE_W{' | PTE_G' if self.kernel_global else ''}",
            "    mov [KPT + ecx*4], eax",
            "    inc ecx",
            "    cmp ecx, 1024",
            "    jne .kpt",
            f"    mov ecx, {USER_TEXT >> 12:#x}                   ; the user pages: text, stack",
            ".user:",
            "    or dword [KPT + ecx*4], PTE_U",
            "    inc ecx",
            f"    cmp ecx, {(USER_TEXT >> 12) + USER_PAGES:#x}",
            "    jne .user",
            f"    or dword [KPT + {(USTACK_TOP >> 12) - 1:#x}*4], PTE_U",
            "    mov eax, cr4",
            f"    or eax, CR4_PSE{' | CR4_PGE' if p['pge'] else ''}",
            "    mov cr4, eax",
            "    mov eax, PD0",
            "    mov cr3, eax",
            "    mov eax, cr0",
            f"    or eax, CR0_PG{' | CR0_WP' if p['wp'] else ''}",
            "    mov cr0, eax",
        ]
        if p["timer"]:
            out += [f"    mov eax, {p['timer']}", "    out TIMER_PERIOD, eax"]
        out += ["    sti", ""]
        out += self.k
        out += ["", "    jmp finish", "", KERNEL_TEXT, "", "align 4096",
                f"{_at(USER_TEXT)}      ; user stubs (user pages)"]
        out += self.u or ["    nop"]
        out += ["", "; --- the paging structures and the frames, as loaded"]
        out += self._memory_text()
        return "\n".join(out) + "\n"

    def _memory_text(self) -> list[str]:
        out = []
        for pn in sorted(self.initial):
            pa = pn << 12
            page = self.initial[pn]
            words = [int.from_bytes(page[i:i + 4], "little") for i in range(0, 4096, 4)]
            if pa == KPT:
                continue                # built by the kernel at _start
            name = _table_name(pa)
            out.append("")
            i = 0
            first = True
            while i < 1024:
                if words[i] == 0:
                    i += 1
                    continue
                if pa in STUB_PAGES and i == STUB // 4:
                    i += 1
                    continue
                out.append(_at(pa + 4 * i) + (f"  ; {name}" if first else ""))
                first = False
                while i < 1024 and words[i] and not (pa in STUB_PAGES and i == STUB // 4):
                    pde = pa in PDS
                    out.append(f"    dd {_entry_text(words[i], pde)}  [{i:#x}]"
                               if pa < DATA_BASE else f"    dd {words[i]:#010x}")
                    i += 1
            if pa in STUB_PAGES:
                out += [_at(pa + STUB), f"    mov eax, {stub_value(pa):#010x}", "    ret"]
        return out


KERNEL_TEXT = f"""\
; --- the kernel's routines ----------------------------------------------------
; log_eax: append ('R', eax, 0) to the log
log_eax:
    push edi
    mov edi, [log_ptr]
    mov dword [edi], 'R'
    mov [edi + 4], eax
    mov dword [edi + 8], 0
    add edi, 12
    mov [log_ptr], edi
    pop edi
    ret

; resume_main: abandon the current operation, go on with the next one
resume_main:
    mov esp, MAIN_STACK
    mov dword [fix1], 0
    mov dword [fix2], 0
    mov dword [fix_inv], 0
    sti
    jmp [resume]

; trap: every exception and interrupt (eax = the trap frame)
trap:
    mov ebx, [eax + TF_VEC]
    cmp ebx, T_PF
    je page_fault
    cmp ebx, T_SYSCALL
    je user_done
    cmp ebx, T_TIMER
    je tick
    mov esi, msg_trap               ; anything else: report and power off
    call puts
    mov eax, ebx
    call print_dec
    call newline
    add eax, 100
    out POWER, eax

tick:
    inc dword [ticks]
    ret

; user_done: int 0x80 from a user stub: log ('U', its eax, 0)
user_done:
    mov edi, [log_ptr]
    mov dword [edi], 'U'
    mov ecx, [eax + TF_EAX]
    mov [edi + 4], ecx
    mov dword [edi + 8], 0
    add edi, 12
    mov [log_ptr], edi
    jmp resume_main

; page_fault: log ('F', cr2, error code); apply the prepared fix and retry
; (INVLPG cr2 first if fix_inv: the old entry may be cached), or skip the
; operation
page_fault:
    mov edi, [log_ptr]
    mov dword [edi], 'F'
    mov ecx, cr2
    mov [edi + 4], ecx
    mov ecx, [eax + TF_ERR]
    mov [edi + 8], ecx
    add edi, 12
    mov [log_ptr], edi
    inc dword [faults]
    cmp dword [faults], {MAX_FAULTS}
    jae too_many
    mov edx, [fix1]
    test edx, edx
    je resume_main                  ; no fix: skip the operation
    mov ecx, [edx]
    and ecx, [fix1_and]
    or ecx, [fix1_or]
    mov [edx], ecx
    mov edx, [fix2]
    test edx, edx
    je .fixed
    mov ecx, [edx]
    and ecx, [fix2_and]
    or ecx, [fix2_or]
    mov [edx], ecx
.fixed:
    mov dword [fix1], 0
    mov dword [fix2], 0
    cmp dword [fix_inv], 0
    je .retry
    mov dword [fix_inv], 0
    mov ecx, cr2
    invlpg [ecx]
.retry:
    ret                             ; retry the instruction

too_many:
    mov eax, 99
    out POWER, eax

; finish: print the log, power off with status 0
finish:
    cli
    mov esi, LOG
.next:
    cmp esi, [log_ptr]
    jae .done
    mov eax, [esi]
    call putc
    mov al, ' '
    call putc
    mov eax, [esi + 4]
    call print_hex
    mov al, ' '
    call putc
    mov eax, [esi + 8]
    call print_hex
    call newline
    add esi, 12
    jmp .next
.done:
    mov eax, [ticks]
    call print_dec
    call newline
    mov eax, 0
    out POWER, eax

msg_trap:   db "unexpected trap ", 0
align 4
log_ptr:    dd 0
resume:     dd 0
faults:     dd 0
ticks:      dd 0
fix1:       dd 0
fix1_and:   dd 0
fix1_or:    dd 0
fix2:       dd 0
fix2_and:   dd 0
fix2_or:    dd 0
fix_inv:    dd 0

%include "lib.inc"
"""

# --- the strategies -----------------------------------------------------------------
def _flags(draw, *names: int) -> int:
    v = 0
    for bit in names:
        if draw(st.booleans()):
            v |= bit
    return v


@st.composite
def entries(draw, level: str) -> int:
    """A paging entry: mostly sensible, sometimes odd (aliases, reserved bits)."""
    if level == "pde":
        kind = draw(st.sampled_from(("pt", "large", "np", "pt", "large", "recursive",
                                     "dataframe", "rsvd")))
    else:
        kind = draw(st.sampled_from(("data", "np", "data", "large-sub", "table")))
    rights = P | (W if draw(st.booleans()) else 0) | (U if draw(st.booleans()) else 0)
    extra = _flags(draw, A, D, G, PWT, PCD) if draw(st.booleans()) else 0
    if kind == "pt":
        return draw(st.sampled_from(PTS)) | rights | (extra & ~(D | G))
    if kind in ("large", "rsvd"):
        v = draw(st.sampled_from(LARGE)) | PS | rights | extra
        if kind == "rsvd":
            v |= RSVD_4M
        elif draw(st.booleans()):
            v |= draw(st.sampled_from((0x1000, 0x2000, 0x100000)))  # PAT, ignored bits
        return v
    if kind == "recursive":
        return draw(st.sampled_from(PDS)) | rights
    if kind == "dataframe":
        return draw(st.sampled_from(DATA)) | rights
    if kind == "np":
        inner = draw(entries(level))
        return inner & ~P
    if kind == "data":
        return draw(st.sampled_from(DATA)) | rights | extra | _flags(draw, 0x200, 0x800)
    if kind == "large-sub":
        return draw(st.sampled_from(LARGE_SUBPAGES)) | rights | extra
    return draw(st.sampled_from(PTS + PDS)) | rights | (extra & ~G)


ACCESS_KINDS = ("read", "write", "read", "fetch", "writeb", "write", "smc", "stos",
                "scas", "movs")
OFFSETS = ("0x0", "0x4", "0x7fc", "0xffc", "cross")
# The invalidation events (see the module doc): what freshens a stale page
# before its next access, and what may follow a change of entries.
EVENTS = ("cr3", "cr3-other", "pge", "pse", "wp", "pg", "invlpg-other")
ACCESS_INVALIDATIONS = ("pf", "invlpg", "pf") + EVENTS + ("pf",)
WRITE_FOLLOWERS = ("none", "invlpg", "none", "none") + EVENTS + ("none",)


@st.composite
def _rights(draw) -> int:
    return draw(st.sampled_from((P | W | U, P, P | W, P | U, W | U))) | \
        (_flags(draw, A, D, G) if draw(st.booleans()) else 0)


@st.composite
def operations(draw):
    kind = draw(st.sampled_from(("access", "access", "access", "remap", "switch",
                                 "flush", "access", "edit", "wp", "access", "edit",
                                 "demote", "promote", "recycle", "smc", "pgeflip", "edit",
                                 "stale", "stale", "stale")))
    if kind == "access":
        return ("access", draw(st.sampled_from(ACCESS_KINDS)), draw(st.sampled_from((0, 3))),
                draw(st.integers(0, len(TEST_VPNS) + 3)), draw(st.sampled_from(OFFSETS)),
                draw(st.integers(0, len(SLOTS) - 1)), draw(st.integers(0, 1)),
                draw(entries(draw(st.sampled_from(("pte", "pde"))))),
                draw(st.sampled_from(("fix", "skip"))),
                draw(st.sampled_from(ACCESS_INVALIDATIONS)))
    if kind == "remap":
        level = draw(st.sampled_from(("pte", "pde")))
        return ("remap", level, draw(st.integers(0, 5)), draw(st.integers(0, 2)),
                draw(entries(level)), draw(st.sampled_from(WRITE_FOLLOWERS)))
    if kind == "stale":
        level = draw(st.sampled_from(("pte", "pde")))
        return ("stale", draw(st.integers(0, len(TEST_VPNS) - 1)), level, draw(entries(level)),
                draw(st.booleans()), draw(st.sampled_from(ACCESS_KINDS)),
                draw(st.sampled_from((0, 3))), draw(st.sampled_from(("skip", "fix"))),
                draw(st.sampled_from(ACCESS_INVALIDATIONS)))
    if kind == "edit":
        level = draw(st.sampled_from(("pte", "pde")))
        return ("edit", draw(st.integers(0, len(TEST_VPNS) - 1)), level, draw(entries(level)),
                draw(st.sampled_from(WRITE_FOLLOWERS)))
    if kind == "switch":
        return ("switch", draw(st.integers(0, N_PD - 1)))
    if kind == "flush":
        return ("flush", draw(st.sampled_from(("invlpg",) + EVENTS)),
                draw(st.integers(0, len(TEST_VPNS) - 1)))
    if kind == "demote":
        return ("demote", draw(st.integers(0, N_PD - 1)), draw(st.integers(0, 2)),
                draw(st.integers(0, N_PT - 1)), draw(st.integers(0, 1)), draw(_rights()),
                draw(st.sampled_from(WRITE_FOLLOWERS)))
    if kind == "promote":
        return ("promote", draw(st.integers(0, N_PD - 1)), draw(st.integers(0, 2)),
                draw(st.integers(0, 1)), draw(_rights()), draw(st.sampled_from(WRITE_FOLLOWERS)))
    if kind == "recycle":
        data = st.one_of(st.integers(0, 0xFFFFFFFF).map(lambda v: v & ~P), entries("pte"))
        return ("recycle", draw(st.integers(0, N_PT - 1)),
                tuple(draw(data) for _ in PTX_SET), draw(st.sampled_from(WRITE_FOLLOWERS)))
    if kind == "smc":
        return ("smc", draw(st.integers(0, N_DATA - 1)), draw(st.integers(0, 0xFFFFFFFF)))
    return (kind,)


@st.composite
def plans(draw, max_ops: int = 24) -> dict:
    pdes = [[draw(entries("pde")) for _ in PDX_SET]]
    for _ in range(N_PD - 1):       # other address spaces may share pd0's tables
        pdes.append([e if draw(st.booleans()) else draw(entries("pde")) for e in pdes[0]])
    return {
        "pge": draw(st.booleans()),
        "wp": draw(st.booleans()),
        "timer": draw(st.sampled_from((0, 0, 97, 400))),
        "tlb": draw(st.sampled_from(((64, 4, "split", 8), (8, 2, "split", 1),
                                     (4, 4, "unified", 2), (16, 1, "unified", 4)))),
        "pdes": pdes,
        "ptes": [[draw(entries("pte")) for _ in PTX_SET] for _ in range(N_PT)],
        "ops": draw(st.lists(operations(), min_size=1, max_size=max_ops)),
    }


def compile_plan(plan: dict) -> GuestProgram:
    return Compiler(plan).compile()


def guest_programs(max_ops: int = 24):
    """The strategy: random guest programs (``GuestProgram``)."""
    return plans(max_ops).map(compile_plan)

# --- garbage page tables ----------------------------------------------------------
OUTSIDE_RAM = (0x00C00000, 0x7FFFF000, 0xFFFFF000)     # frames past 12 MiB of RAM
OWN_PAGES = PDS + PTS + (KPT, 0x1000, 0x2000, LOG)     # the kernel's own pages


@st.composite
def garbage_entries(draw) -> int:
    """A paging entry with no respect for the rules: random bits, a frame
    outside RAM, the guest's own tables or kernel pages, or a sane one."""
    kind = draw(st.sampled_from(("random", "outside", "own", "sane", "random")))
    flags = draw(st.integers(0, 0xFFF))
    if kind == "random":
        return draw(st.integers(0, 0xFFFFFFFF))
    if kind == "outside":
        return draw(st.sampled_from(OUTSIDE_RAM)) | flags | P
    if kind == "own":
        return draw(st.sampled_from(OWN_PAGES)) | flags | P
    return draw(entries(draw(st.sampled_from(("pde", "pte")))))


# Garbage kernels run natively at their plan's TLB shape only (see
# GarbageCompiler); every mode at that shape must agree.
GARBAGE_TLBS = ()
GARBAGE_TITLE = "garbage page tables"


def is_garbage(source: str) -> bool:
    """Whether a saved program is a garbage-table kernel (its header says)."""
    return f"; generated by tests/guestgen.py ({GARBAGE_TITLE})" in source[:4000]


class GarbageCompiler(Compiler):
    """Garbage tables: no model, no fixes; the #PF handler logs and skips.

    Every write is followed by a CR3 reload (CR4.PGE stays off), so even
    garbage follows the TLB rules: the result must not depend on the mode.
    Whatever the guest does to itself -- unmap its own code, its IDT, point
    CR3 at a data page or outside RAM -- every mode must end the same way.
    Not every TLB shape, though (``GARBAGE_TLBS``): a write that unmaps the
    kernel's own code is followed by the fetches of the reload, which x86
    serves from the TLB while it still holds the code page -- one entry
    shared with the data stops the kernel an instruction or two earlier
    than a split TLB does."""

    TITLE = GARBAGE_TITLE

    def _refresh_globals(self) -> None:
        pass

    def op_access(self, n, kind, cpl, va, value) -> None:
        size = 1 if kind == "writeb" else 4
        self._emit_access(n, kind, cpl == 3, va, size, value, None)
        if kind in ("write", "writeb"):
            self.k += ["    mov eax, cr3                ; flush the TLB", "    mov cr3, eax"]

    def op_remap(self, n, slot, table, value) -> None:
        page = (PDS + PTS)[table % (N_PD + N_PT)]
        pa = page + 4 * SLOTS[slot % len(SLOTS)]
        self.k += [f"op{n}:                            ; {_table_name(pa)}"
                   f"[{(pa & 0xFFF) >> 2:#x}] := garbage",
                   f"    mov dword [{pa:#x}], {value:#010x}",
                   "    mov eax, cr3", "    mov cr3, eax"]

    def op_cr3(self, n, target) -> None:
        self.k += [f"op{n}:                            ; CR3 := {target:#x} "
                   f"({_table_name(target)})",
                   f"    mov eax, {target:#x}", "    mov cr3, eax"]

    def _walk(self, va, write=False, user=False):
        return Walk(True)                   # no model: comments name no pa


GARBAGE_VAS = tuple(v << 12 for v in TEST_VPNS) + (0x0, 0x1000, 0xFFFFF000, 0x3FFFFC)


@st.composite
def garbage_operations(draw):
    kinds = ("access", "access", "remap", "cr3", "wp", "access")
    if "wp-emulate-ro-pde" in AVOID:
        kinds = kinds[:4]               # CR0.WP stays 1: no wp-emulate at all
    kind = draw(st.sampled_from(kinds))
    if kind == "access":
        va = draw(st.one_of(st.sampled_from(GARBAGE_VAS), st.integers(0, 0xFFFFFFFF)))
        # No fetches: running code through a garbage mapping runs the kernel
        # again from anywhere, and its writes would not follow the TLB rules.
        return ("access", draw(st.sampled_from(("read", "write", "writeb", "read"))),
                draw(st.sampled_from((0, 3))), va, draw(st.integers(0, 0xFFFFFFFF)))
    if kind == "remap":
        return ("remap", draw(st.integers(0, len(SLOTS) - 1)),
                draw(st.integers(0, N_PD + N_PT - 1)), draw(garbage_entries()))
    if kind == "cr3":
        return ("cr3", draw(st.sampled_from(PDS + PTS + (KPT, DATA[0]) + OUTSIDE_RAM)))
    return ("wp",)


@st.composite
def garbage_plans(draw, max_ops: int = 16) -> dict:
    sane = KPT | P | W | U
    return {
        "pge": False, "wp": "wp-emulate-ro-pde" in AVOID or draw(st.booleans()),
        "timer": draw(st.sampled_from((0, 151))),
        "tlb": draw(st.sampled_from(((64, 4, "split", 8), (4, 4, "unified", 2)))),
        "max_cycles": 3_000_000,
        "kernel_pdes": [sane] + [draw(st.one_of(st.just(sane), garbage_entries()))
                                 for _ in range(N_PD - 1)],
        "pdes": [[draw(garbage_entries()) for _ in PDX_SET] for _ in range(N_PD)],
        "ptes": [[draw(garbage_entries()) for _ in PTX_SET] for _ in range(N_PT)],
        "ops": draw(st.lists(garbage_operations(), min_size=1, max_size=max_ops)),
    }


def garbage_programs(max_ops: int = 16):
    """The strategy: guests with garbage page tables (``GuestProgram``)."""
    return garbage_plans(max_ops).map(lambda plan: GarbageCompiler(plan).compile())

# --- shrinking a failing guest further ---------------------------------------------------
def recompile(prog: GuestProgram, plan: dict) -> GuestProgram:
    """``plan`` compiled the way ``prog`` was."""
    return GarbageCompiler(plan).compile() if prog.garbage else compile_plan(plan)


def minimize(prog: GuestProgram, fails, seconds: float = 180.0) -> GuestProgram:
    """A smaller guest that still ``fails(prog) -> bool``: each operation
    dropped, then each initial test entry cleared (not present), then the
    timer and CR4.PGE off, wherever the failure stays.  Compiling again
    runs the model again, so every candidate follows the TLB rules.  Stops
    after ``seconds``; hypothesis' own shrinking, which knows nothing of
    operations, often stops long before this."""
    import time
    end = time.monotonic() + seconds
    best = prog

    def attempt(plan: dict) -> bool:
        nonlocal best
        if time.monotonic() > end:
            return False
        try:
            cand = recompile(prog, plan)
        except Exception:               # (a plan the compiler cannot place)
            return False
        if cand.source != best.source and fails(cand):
            best = cand
            return True
        return False

    for _ in range(3):                  # until nothing more goes
        before = best.source
        i = len(best.plan["ops"]) - 1
        while i >= 0:
            ops = best.plan["ops"]
            attempt({**best.plan, "ops": ops[:i] + ops[i + 1:]})
            i -= 1
        for level, width in (("pdes", len(PDX_SET)), ("ptes", len(PTX_SET))):
            for row in range(len(best.plan[level])):
                for col in range(width):
                    if best.plan[level][row][col]:
                        table = [list(r) for r in best.plan[level]]
                        table[row][col] = 0
                        attempt({**best.plan, level: table})
        for key, value in (("timer", 0), ("pge", False)):
            if best.plan.get(key) != value:
                attempt({**best.plan, key: value})
        if best.source == before:
            break
    return best


# --- running a guest everywhere -------------------------------------------------------
def configs():
    """(mode, shadow policy) of every way to run a guest: native first."""
    from emu.vmm.shadow import POLICIES
    return [("native", None)] + [("shadow", p) for p in POLICIES] + [("nested", None)]


# TLB shapes every guest also runs with natively (entries, ways, kind, large
# entries, policy): one entry; the default; fully associative with FIFO; a
# small unified one with random replacement; one so large it never evicts.
NATIVE_TLBS = ((1, 1, "unified", 1, "lru"), (64, 4, "split", 8, "lru"),
               (64, 64, "split", 8, "fifo"), (16, 4, "unified", 2, "random"),
               (1024, 1024, "split", 64, "lru"))


def tlb_label(shape) -> str:
    entries, ways, kind, large, policy = shape
    return f"native/tlb {entries}x{ways} {kind} {large}L {policy}"


def run_everywhere(source: str, name: str, options: dict | None = None,
                   check: bool = True, tlbs=NATIVE_TLBS, only=None) -> list:
    """Run assembly ``source`` natively (with the TLB ``options`` name, then
    with each TLB shape of ``tlbs``), under each shadow policy and under
    nested paging (invariants checked after every exit): [(label, system,
    result)], native first.  ``options`` are Config fields; ``only``: the
    labels to run besides native (shrinking a failure needs no others)."""
    from emu import programs
    from emu.asm import assemble
    from emu.system import Config, System
    image = assemble(source, name, include_dirs=[str(programs.include_dir())])
    options = dict(options or {})
    runs = [("native", None, {})]
    for shape in tlbs:
        entries, ways, kind, large, policy = shape
        runs.append(("native", tlb_label(shape),
                     {"tlb_entries": entries, "tlb_ways": ways, "tlb_kind": kind,
                      "tlb_large": large, "tlb_policy": policy}))
    runs += [(mode, mode + (f"/{policy}" if policy else ""), {"shadow_policy": policy})
             for mode, policy in configs()[1:]]
    if only is not None:
        runs = [run for run in runs if run[1] is None or run[1] in only]
    out = []
    for mode, label, extra in runs:
        fields = {**options, **{k: v for k, v in extra.items() if v is not None}}
        cfg = Config(mode=mode, check_invariants=check and mode != "native", **fields)
        system = System(image, cfg)
        result = system.run()
        if result.outcome == "budget" and out and out[0][2].outcome != "budget":
            # The budget is in cycles and the VMM's work spends some: a guest
            # that ends natively may run out under a VMM.  Let it finish (it
            # retires no more instructions than natively).  A VMM that
            # livelocks still ends: at 64 times the native run's cycles.
            limit = max(cfg.max_cycles, 64 * out[0][2].cycles)
            system = System(image, cfg.with_(max_cycles=limit))
            result = system.run()
        out.append((label or mode, system, result))
    return out


def fault_log(system) -> list[tuple[int, int]]:
    """The (CR2, error code) pairs the guest's #PF handler logged."""
    end = int.from_bytes(system.guest_read(system.image.symbols["log_ptr"], 4), "little")
    out = []
    for a in range(LOG, min(end, LOG + MAX_LOG), 12):
        tag, cr2, ec = (int.from_bytes(system.guest_read(a + i, 4), "little") for i in (0, 4, 8))
        if tag == ord("F"):
            out.append((cr2, ec))
    return out
