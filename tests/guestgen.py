"""Random guest kernels for the differential property tests.

``guest_programs()`` is a hypothesis strategy of ``GuestProgram``: assembly
text for a small kernel that builds random page tables and then performs a
random list of operations on a handful of test pages, so that a failing
example shrinks to a short, readable program.  The kernel:

* has up to three page directories (``pd0`` ..), up to six page tables
  (``pt0`` ..), data frames with a code stub each (``frame0`` ..) and two
  4 MiB frames; every directory maps the kernel (va 0..4 MiB, identity,
  through ``kpt``; global when CR4.PGE is on);
* maps its test pages (``TEST_VPNS``: three 4 MiB regions, three pages in
  each) with random entries: 4 KiB and 4 MiB pages, user/supervisor,
  read-only/writable, present or not, G, A, D, PWT, PCD, AVL bits, reserved
  bit 21 in a 4 MiB entry, a directory used as a page table (recursive
  mapping), page tables and data frames mapped as data (aliases);
* performs reads, writes (dword and byte, page-crossing too), fetches (a
  call to the frame's stub) at CPL 0 and CPL 3 (an ``iret`` to a user stub
  that ends with ``int 0x80``); remaps (a write to a PDE or PTE) followed by
  INVLPG, a CR3 reload or nothing (then an invalidation comes later, before
  the next access to an affected page); CR3 switches; CR0.WP toggles;
* handles #PF in its own handler, which logs CR2 and the error code and
  either applies the fix prepared for this operation (sets P, U or W, or
  clears a reserved bit, then INVLPG) and retries, or skips the operation;
* prints its log at the end and powers off.

The generator runs a reference model of 32-bit paging over the guest's
memory, written from the SDM independently of ``emu.hw.paging``.  It uses the
model for two things:

* the TLB rules: an operation that changes a paging entry makes every test
  page whose translation used that entry *stale*; the generator emits an
  invalidation (INVLPG, a CR3 reload, or a CR4.PGE toggle for global
  entries) before the next access to a stale page.  So the guests follow the
  architecture's rules and every mode must give the same result;
* a prediction: ``GuestProgram.expected_faults``, the (CR2, error code) of
  every #PF the guest will take, which the tests compare with the log of the
  native run (the model against the emulator's walker).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hypothesis import strategies as st

from emu.hw.paging import decode_flags

# --- the physical layout ---------------------------------------------------------
MEM_MIB = 12
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

P, W, U, PWT, PCD, A, D, PS, G = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100
RSVD_4M = 1 << 21
PF_P, PF_W, PF_U, PF_RSVD = 1, 2, 4, 8

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


# Known emulator bugs the generator steers around (each has a strict xfail
# test in tests/test_properties.py; remove the name when the bug is fixed).
# Fixed since: "wp-emulate-ro-pde" (shadow paging recursed on a write that
# CR0.WP=0 allows through a read-only PDE; now tests/regressions/wp0_*.s).
AVOID: set[str] = set()


# --- the reference model ------------------------------------------------------------
@dataclass
class Walk:
    fault: bool
    ec: int = 0
    pa: int | None = None
    path: tuple[int, ...] = ()          # physical addresses of the entries read
    fixes: tuple[tuple[int, int, int], ...] = ()   # (entry pa, and, or) that allow it
    mapping: int | None = None          # the mapping entry (PTE, or 4 MiB PDE)


class Model:
    """Guest-physical memory and 32-bit paging (CR4.PSE=1), by the SDM."""

    def __init__(self, pages: dict[int, bytearray]):
        self.pages = pages

    def page(self, pn: int) -> bytearray:
        if pn not in self.pages:
            self.pages[pn] = bytearray(4096)
        return self.pages[pn]

    def rd32(self, pa: int) -> int:
        assert pa < MEM_MIB << 20, f"the model walked outside RAM at pa {pa:#x}"
        return int.from_bytes(self.page(pa >> 12)[pa & 0xFFF:(pa & 0xFFF) + 4], "little")

    def write(self, pa: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.page((pa + i) >> 12)[(pa + i) & 0xFFF] = b

    def walk(self, cr3: int, va: int, write: bool, user: bool, wp: bool) -> Walk:
        ec = (PF_W if write else 0) | (PF_U if user else 0)
        need = (U if user else 0) | (W if write and (user or wp) else 0)
        pde_pa = (cr3 & 0xFFFFF000) | (va >> 22) << 2
        pde = self.rd32(pde_pa)
        if not pde & P:
            return Walk(True, ec, path=(pde_pa,), fixes=((pde_pa, ~0, P),))
        if pde & PS:
            if pde & RSVD_4M:
                return Walk(True, ec | PF_P | PF_RSVD, path=(pde_pa,),
                            fixes=((pde_pa, ~RSVD_4M, 0),))
            if pde & need != need:
                return Walk(True, ec | PF_P, path=(pde_pa,), fixes=((pde_pa, ~0, need),))
            return Walk(False, pa=(pde & 0xFFC00000) | (va & 0x3FFFFF), path=(pde_pa,),
                        mapping=pde)
        pte_pa = (pde & 0xFFFFF000) | ((va >> 12) & 0x3FF) << 2
        pte = self.rd32(pte_pa)
        path = (pde_pa, pte_pa)
        if not pte & P:
            return Walk(True, ec, path=path, fixes=((pte_pa, ~0, P),))
        if pde & pte & need != need:
            fixes = tuple((e_pa, ~0, need) for e_pa, e in ((pde_pa, pde), (pte_pa, pte))
                          if e & need != need)
            return Walk(True, ec | PF_P, path=path, fixes=fixes)
        return Walk(False, pa=(pte & 0xFFFFF000) | (va & 0xFFF), path=path, mapping=pte)


# --- the program ------------------------------------------------------------------
@dataclass
class GuestProgram:
    """One generated guest: its source and what the generator expects."""

    source: str
    options: list[str]                  # emu run options (also in the source)
    expected_faults: list[tuple[int, int]] = field(default_factory=list)
    ops: int = 0

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
        self.cr3 = PDS[0]
        self.k: list[str] = []          # kernel text (the operations)
        self.u: list[str] = []          # user text (the user stubs)
        self.faults: list[tuple[int, int]] = []
        self.stale: set[int] = set()    # test vpns to invalidate before their next access
        self.maybe_global: set[int] = set()   # test vpns that may hold a global TLB entry
        self.model = Model(self._initial_memory())
        self._refresh_globals()

    # --- the initial memory -------------------------------------------------------
    def _initial_memory(self) -> dict[int, bytearray]:
        pages: dict[int, bytearray] = {}

        def put(pa: int, value: int) -> None:
            pg = pages.setdefault(pa >> 12, bytearray(4096))
            pg[pa & 0xFFF:(pa & 0xFFF) + 4] = value.to_bytes(4, "little")
        kflags = P | W | (G if self.pge else 0)
        for i in range(1024):
            user = USER_TEXT >> 12 <= i < (USER_TEXT >> 12) + USER_PAGES or \
                i == (USTACK_TOP >> 12) - 1
            put(KPT + 4 * i, (i << 12) | kflags | (U if user else 0))
        # With CR4.PGE the kernel's TLB entries are global and may outlive a
        # CR3 switch: whether a walk through another directory's kernel PDE
        # happens (and sets its A bit) depends on the TLB's size, which the
        # architecture leaves open (and a VMM that splinters 4 MiB pages
        # changes).  So that PDE starts accessed.
        sane = KPT | P | W | U | (A if self.pge else 0)
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

    # --- TLB rules ------------------------------------------------------------------
    def _walk(self, va: int, write=False, user=False) -> Walk:
        return self.model.walk(self.cr3, va, write, user, self.wp)

    def _refresh_globals(self) -> None:
        """Every test vpn mapped global now may get a global TLB entry."""
        if not self.pge:
            return
        for vpn in TEST_VPNS:
            w = self._walk(vpn << 12)
            if w.mapping is not None and w.mapping & G:
                self.maybe_global.add(vpn)

    def _write(self, pa: int, data: bytes) -> None:
        self._write_bytes([pa + i for i in range(len(data))], data)

    def _load_cr3(self, pd: int) -> None:
        self.cr3 = pd
        self.stale = set(self.maybe_global)
        self._refresh_globals()

    def _invlpg(self, vpn: int) -> None:
        self.stale.discard(vpn)
        self.maybe_global.discard(vpn)
        self._refresh_globals()

    def _flush_all(self) -> None:
        self.stale.clear()
        self.maybe_global.clear()
        self._refresh_globals()

    def _emit_invalidate(self, vpn: int, how: str) -> None:
        """Make ``vpn`` not stale: by ``how`` first, then INVLPG if needed."""
        if how == "cr3":
            self.k += ["    mov eax, cr3                ; invalidate: reload CR3",
                       "    mov cr3, eax"]
            self._load_cr3(self.cr3)
        elif how == "pge" and self.pge:
            self.k += ["    mov eax, cr4                ; invalidate all: toggle CR4.PGE",
                       "    xor eax, CR4_PGE", "    mov cr4, eax",
                       "    xor eax, CR4_PGE", "    mov cr4, eax"]
            self._flush_all()
        if vpn in self.stale:
            self.k.append(f"    invlpg [{vpn << 12:#010x}]")
            self._invlpg(vpn)

    # --- operations -------------------------------------------------------------------
    def compile(self) -> GuestProgram:
        for n, op in enumerate(self.plan["ops"], 1):
            getattr(self, "op_" + op[0])(n, *op[1:])
        return GuestProgram(self._source(), self._options(), self.faults,
                            len(self.plan["ops"]))

    def op_switch(self, n: int, k: int) -> None:
        self.k += [f"op{n}:                            ; switch to address space {k}",
                   f"    mov eax, PD{k}", "    mov cr3, eax"]
        self._load_cr3(PDS[k])

    def op_flush(self, n: int, how: str, slot: int) -> None:
        vpn = TEST_VPNS[slot % len(TEST_VPNS)]
        if how == "invlpg":
            self.k += [f"op{n}:", f"    invlpg [{vpn << 12:#010x}]"]
            self._invlpg(vpn)
        else:
            self.k.append(f"op{n}:")
            self._emit_invalidate(-1, how)

    def op_wp(self, n: int) -> None:
        self.wp = not self.wp
        self.k += [f"op{n}:                            ; CR0.WP := {int(self.wp)}",
                   "    mov eax, cr0", "    xor eax, CR0_WP", "    mov cr0, eax"]

    def op_remap(self, n: int, level: str, table: int, slot: int, value: int,
                 inval: str) -> None:
        if level == "pde":
            d = PDX_SET[slot % len(PDX_SET)]
            pa = PDS[table % N_PD] + 4 * d
        else:
            t = PTX_SET[slot % len(PTX_SET)]
            pa = PTS[table % N_PT] + 4 * t
        self.k += [f"op{n}:                            ; remap: {_table_name(pa)}"
                   f"[{(pa & 0xFFF) >> 2:#x}]",
                   f"    mov dword [{pa:#x}], {_entry_text(value, level == 'pde')}"]
        self._write(pa, value.to_bytes(4, "little"))
        if inval == "invlpg":
            for vpn in sorted(self.stale):
                self.k.append(f"    invlpg [{vpn << 12:#010x}]")
                self._invlpg(vpn)
        elif inval == "cr3":
            self._emit_invalidate(-1, "cr3")
        # "none": stale pages are invalidated before their next access

    def op_access(self, n: int, kind: str, cpl: int, vslot: int, off: str, slot: int,
                  byte: int, value: int, fault: str, inval: str) -> None:
        vpn = TEST_VPNS[vslot % len(TEST_VPNS)]
        user = cpl == 3
        # A write that would reach the kernel, or a fetch that would not land
        # on a code stub, is tried again as a read.
        for kind in dict.fromkeys((kind, "read")):  # noqa: B020 (the last try is kept)
            snap = self._snapshot()
            va, size = self._place(vpn, kind, off, slot, byte)
            for v in sorted({va >> 12, ((va + size - 1) & 0xFFFFFFFF) >> 12}):
                if v in self.stale:                 # the TLB rules
                    self._emit_invalidate(v, inval)
            fix, done = self._run_access(va, size, kind, user, fault)
            if done is None or (self._allowed(kind, done) and
                                not self._known_bug(kind, va, size, user)):
                break
            self._restore(snap)
        self._emit_access(n, kind, user, va, size, value, fix)
        if done is not None and kind in ("write", "writeb"):
            data = value.to_bytes(4, "little")[:size]
            self._write_bytes(done, data)

    def _place(self, vpn: int, kind: str, off: str, slot: int, byte: int) -> tuple[int, int]:
        """The va and size of an access to ``vpn``: page tables get
        entry-sized writes at a slot, data pages the dwords they start
        with, a fetch goes to the code stub."""
        probe = self._walk(vpn << 12)
        target = None if probe.fault else probe.pa & 0xFFFFF000
        size = 1 if kind == "writeb" else 4
        low = byte if size == 1 else 0
        if kind == "fetch":
            return (vpn << 12) + STUB, 1
        if target is not None and TABLES <= target < TABLES + 0x100000:
            return (vpn << 12) + 4 * SLOTS[slot % len(SLOTS)] + low, size
        if off == "cross":
            nxt = (vpn + 1) & 0xFFFFF
            return (vpn << 12) + (0xFFE if nxt in TEST_VPNS else 0xFFC), size
        return (vpn << 12) + int(off, 16) + low, size

    def _allowed(self, kind: str, pas: list[int]) -> bool:
        """May the access that reached ``pas`` stay?  Writes must not reach
        the kernel (its code, data, stacks, page table, a directory's kernel
        entry) nor a code stub; a fetch must run a code stub."""
        if kind == "fetch":
            return pas[0] & 0xFFFFF000 in STUB_PAGES
        if kind == "read":
            return True
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
        if "wp-emulate-ro-pde" in AVOID and kind in ("write", "writeb") and not user \
                and not self.wp:
            for i in (0, size - 1):
                w = self._walk((va + i) & 0xFFFFFFFF, True, False)
                if not w.fault and not self.model.rd32(w.path[0]) & W:
                    return True
        return False

    def _snapshot(self):
        return ({pn: bytearray(pg) for pn, pg in self.model.pages.items()},
                len(self.k), len(self.faults), set(self.stale), set(self.maybe_global),
                self.cr3)

    def _restore(self, snap) -> None:
        pages, nk, nf, stale, maybe_global, cr3 = snap
        self.model.pages = pages
        del self.k[nk:]
        del self.faults[nf:]
        self.stale, self.maybe_global, self.cr3 = stale, maybe_global, cr3

    def _run_access(self, va: int, size: int, kind: str, user: bool, fault: str):
        """Model the access and the #PF handler: returns the fix prepared for
        the access (or None) and the physical address of each byte it
        reached (None if the handler skipped it)."""
        write = kind in ("write", "writeb")
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
            self.faults.append((p, w.ec))
            if armed is not None or fault != "fix" or not self._fix_ok(w.fixes):
                return armed, None                  # skipped
            armed = w.fixes
            for e_pa, and_, or_ in w.fixes:
                old = self.model.rd32(e_pa)
                self.model.write(e_pa, ((old & and_) | or_).to_bytes(4, "little"))
            self._refresh_globals()
            self._invlpg(p >> 12)                   # the handler's INVLPG [cr2]

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

    def _emit_access(self, n, kind, user, va, size, value, fix) -> None:
        who = "user" if user else "supervisor"
        w = self._walk(va)
        where = "" if w.fault else f" (pa {w.pa:#x}, {_table_name(w.pa)})"
        lines = [f"op{n}:                            ; {who} {kind} at va {va:#010x}{where}",
                 f"    mov dword [resume], op{n}_done"]
        for i, (e_pa, and_, or_) in enumerate(fix or (), 1):
            lines += [f"    mov dword [fix{i}], {e_pa:#x}           ; on #PF: fix "
                      f"{_table_name(e_pa)}[{(e_pa & 0xFFF) >> 2:#x}]",
                      f"    mov dword [fix{i}_and], {and_ & 0xFFFFFFFF:#x}",
                      f"    mov dword [fix{i}_or], {or_:#x}"]
        if kind == "read":
            insn = [f"    mov eax, [{va:#010x}]"]
        elif kind == "write":
            insn = [f"    mov dword [{va:#010x}], {value:#010x}"]
        elif kind == "writeb":
            insn = [f"    mov byte [{va:#010x}], {value & 0xFF:#04x}"]
        else:
            insn = [f"    call {va:#010x}"]
        if user:
            lines += ["    push USER_SS", "    push USTACK_TOP",
                      "    push EFLAGS_BASE | EFLAGS_IF", "    push USER_CS",
                      f"    push u_op{n}", "    iret"]
            self.u += [f"u_op{n}:"] + insn + ["    int 0x80"]
        else:
            lines += insn
            if kind in ("read", "fetch"):
                lines.append("    call log_eax")
        lines.append(f"op{n}_done:")
        self.k += lines

    def _write_bytes(self, pas, data) -> None:
        entries = {pa & ~3 for pa in pas}
        before = {vpn: self._walk(vpn << 12).path for vpn in TEST_VPNS}
        for pa, b in zip(pas, data):
            self.model.write(pa, bytes([b]))
        for vpn, path in before.items():
            if entries & set(path):
                self.stale.add(vpn)
        self._refresh_globals()

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
            "bits 32",
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
            f"    or eax, PTE_P | PTE_W{' | PTE_G' if p['pge'] else ''}",
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
                f"section at_{USER_TEXT:x} start={USER_TEXT:#x}      ; user stubs (user pages)"]
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
                at = pa + 4 * i
                out.append(f"section at_{at:x} start={at:#x}" + (f"  ; {name}" if first else ""))
                first = False
                while i < 1024 and words[i] and not (pa in STUB_PAGES and i == STUB // 4):
                    pde = pa in PDS
                    out.append(f"    dd {_entry_text(words[i], pde)}  [{i:#x}]"
                               if pa < DATA_BASE else f"    dd {words[i]:#010x}")
                    i += 1
            if pa in STUB_PAGES:
                out += [f"section at_{pa + STUB:x} start={pa + STUB:#x}",
                        f"    mov eax, {stub_value(pa):#010x}",
                        "    ret"]
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

; page_fault: log ('F', cr2, error code); apply the prepared fix and retry,
; or skip the operation
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
    mov ecx, cr2
    invlpg [ecx]
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


ACCESS_KINDS = ("read", "write", "read", "fetch", "writeb", "write")
OFFSETS = ("0x0", "0x4", "0x7fc", "0xffc", "cross")


@st.composite
def operations(draw):
    kind = draw(st.sampled_from(("access", "access", "access", "remap", "switch",
                                 "flush", "access", "remap", "wp")))
    if kind == "access":
        return ("access", draw(st.sampled_from(ACCESS_KINDS)), draw(st.sampled_from((0, 3))),
                draw(st.integers(0, len(TEST_VPNS) - 1)), draw(st.sampled_from(OFFSETS)),
                draw(st.integers(0, len(SLOTS) - 1)), draw(st.integers(0, 1)),
                draw(entries(draw(st.sampled_from(("pte", "pde"))))),
                draw(st.sampled_from(("fix", "skip"))),
                draw(st.sampled_from(("invlpg", "cr3", "pge"))))
    if kind == "remap":
        level = draw(st.sampled_from(("pte", "pde")))
        return ("remap", level, draw(st.integers(0, 5)), draw(st.integers(0, 2)),
                draw(entries(level)), draw(st.sampled_from(("invlpg", "none", "cr3"))))
    if kind == "switch":
        return ("switch", draw(st.integers(0, N_PD - 1)))
    if kind == "flush":
        return ("flush", draw(st.sampled_from(("invlpg", "cr3", "pge"))),
                draw(st.integers(0, len(TEST_VPNS) - 1)))
    return ("wp",)


@st.composite
def plans(draw, max_ops: int = 24) -> dict:
    return {
        "pge": draw(st.booleans()),
        "wp": draw(st.booleans()),
        "timer": draw(st.sampled_from((0, 0, 97, 400))),
        "tlb": draw(st.sampled_from(((64, 4, "split", 8), (8, 2, "split", 1),
                                     (4, 4, "unified", 2), (16, 1, "unified", 4)))),
        "pdes": [[draw(entries("pde")) for _ in PDX_SET] for _ in range(N_PD)],
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


class GarbageCompiler(Compiler):
    """Garbage tables: no model, no fixes; the #PF handler logs and skips.

    Every write is followed by a CR3 reload (CR4.PGE stays off), so even
    garbage follows the TLB rules: the result must not depend on the mode.
    Whatever the guest does to itself -- unmap its own code, its IDT, point
    CR3 at a data page or outside RAM -- every mode must end the same way."""

    TITLE = "garbage page tables"

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


# --- running a guest everywhere -------------------------------------------------------
def configs():
    """(mode, shadow policy) of every way to run a guest: native first."""
    from emu.vmm.shadow import POLICIES
    return [("native", None)] + [("shadow", p) for p in POLICIES] + [("nested", None)]


def run_everywhere(source: str, name: str, options: dict | None = None,
                   check: bool = True) -> list:
    """Run assembly ``source`` natively, under each shadow policy and under
    nested paging (invariants checked after every exit): [(label, system,
    result)], native first.  ``options`` are Config fields."""
    from emu import programs
    from emu.asm import assemble
    from emu.system import Config, System
    image = assemble(source, name, include_dirs=[str(programs.include_dir())])
    out = []
    for mode, policy in configs():
        cfg = Config(mode=mode, shadow_policy=policy or Config.shadow_policy,
                     check_invariants=check and mode != "native", **(options or {}))
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
        out.append((mode + (f"/{policy}" if policy else ""), system, result))
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
