"""Machine memory and the PMap: every machine page and every guest page in
exactly one state.

``MachineMemory`` is the emulated host's RAM (the ``ma`` space): 4 KiB
machine pages handed out lazily and zeroed.  Each machine page (mpn) is in
one state, with an owner::

    free          on no list but the free one; nobody may map it
    vmm           the VMM's own (shadow or nested tables); never reclaimed
    mapped        private to one VM (owner: the VM's name), which may map it
    shared        read-only, shared by several guest pages (owner "shared")
    writing-out   its contents are on their way to the swap disk; pinned
    reading-in    its contents are on their way back from the disk; pinned

    free -> vmm -> free
    free -> mapped <-> shared                      (content-based sharing)
    mapped -> writing-out -> free | mapped         (swap-out; a touch rescues it)
    free -> reading-in -> mapped                   (swap-in)
    mapped -> free ; shared -> free                (zero page dropped, last sharer gone,
                                                    a shared page reclaimed from every sharer)

``set_state`` is the one place a page changes state; it refuses any other
transition.  Every mapping of a page (spte, npte, TLB entry) is zapped
*before* it leaves ``mapped`` or ``shared`` (the host's job, see host.py).

``PMap`` is one VM's map ppn -> mpn.  A guest page (ppn) is in one state::

    unbacked      no machine page yet: reads see zeros, the first touch allocates
    resident      backed by a private mapped page
    shared        backed by a shared page; a write gets a private copy (COW)
    writing-out   evicted, its write to the swap disk in flight
    swapped       on the disk: its contents are in a swap slot
    reading-in    coming back from the swap disk

Only ``resident`` and ``shared`` guest pages have an mpn a VM may map
(``mpn_of``); ``owns(mpn)`` is the resource-control test.
"""

from __future__ import annotations

from struct import Struct

from ..hw.memory import PAGE_SHIFT, BusError, MemoryImage, PhysMem

_unpack32 = Struct("<I").unpack_from

# Machine page states.
FREE, VMM, MAPPED, SHARED_PAGE, WRITING_OUT, READING_IN = (
    "free", "vmm", "mapped", "shared", "writing-out", "reading-in")
TRANSITIONS = {
    FREE: {VMM, MAPPED, READING_IN},
    VMM: {FREE},
    MAPPED: {SHARED_PAGE, WRITING_OUT, FREE},
    SHARED_PAGE: {FREE},
    WRITING_OUT: {FREE, MAPPED},
    READING_IN: {MAPPED},
}
# Guest page states.
UNBACKED, RESIDENT, SHARED, SWAPPED = "unbacked", "resident", "shared", "swapped"
VMM_OWNER = "vmm"
SHARED_OWNER = "shared"        # a machine page shared by several guest pages


class OutOfMachineMemory(Exception):
    """No free machine page is left."""


class PageStateError(AssertionError):
    """A page was asked to make a transition the state machine forbids."""


class MachineMemory:
    """Machine pages with owners and states; allocation is lazy and zeroes."""

    STATS = {
        "machine_pages": "machine pages in the machine",
        "allocated": "machine pages in use",
        "peak_allocated": "most machine pages in use at once",
        "allocations": "machine pages handed out",
        "frees": "machine pages given back",
    }

    def __init__(self, size: int):
        self.mem = PhysMem(size, "ma")
        self.npages = self.mem.npages
        self.owner: dict[int, str] = {}      # every page not free: its owner
        self.state: dict[int, str] = {}      # every page not free: its state
        self._free: list[int] = []
        self._next = 1          # mpn 0 is never handed out: a zero spte stays invalid
        self.allocations = 0
        self.frees = 0
        self.peak = 0
        self.version = 0        # bumped by every change of a page's state
        self.on_free = None     # callable(mpn, owner): translations of it must go
        self.on_empty = None    # callable(): free a page when none is left (the host)

    def alloc(self, owner: str, state: str | None = None) -> int:
        """A zeroed machine page for ``owner`` (state ``vmm`` for the VMM,
        ``mapped`` for a VM unless ``state`` says otherwise); raises
        OutOfMachineMemory."""
        if not self.free_pages() and self.on_empty is not None:
            self.on_empty()     # the host takes a guest page back at once
        if self._free:
            mpn = self._free.pop()
        elif self._next < self.npages:
            mpn = self._next
            self._next += 1
        else:
            raise OutOfMachineMemory(
                f"machine memory exhausted ({self.mem.size >> 20} MiB, "
                f"{len(self.owner)} pages in use)")
        self.mem.page(mpn)      # allocated zeroed
        self.version += 1
        self.owner[mpn] = owner
        self.state[mpn] = state or (VMM if owner == VMM_OWNER else MAPPED)
        self.allocations += 1
        if len(self.owner) > self.peak:
            self.peak = len(self.owner)
        return mpn

    def free(self, mpn: int) -> None:
        self.set_state(mpn, FREE)
        owner = self.owner.pop(mpn)
        del self.state[mpn]
        self.mem.free_page(mpn)
        self._free.append(mpn)
        self.frees += 1
        if self.on_free is not None:
            self.on_free(mpn, owner)

    def state_of(self, mpn: int) -> str:
        return self.state.get(mpn, FREE)

    def set_state(self, mpn: int, new: str, owner: str | None = None) -> None:
        """Move page ``mpn`` to state ``new`` (and ``owner``): the one place
        a page changes state; any transition not in TRANSITIONS raises."""
        old = self.state.get(mpn, FREE)
        if new not in TRANSITIONS[old]:
            raise PageStateError(f"machine page {mpn:#x}: no transition {old} -> {new}")
        self.version += 1
        if new != FREE:
            self.state[mpn] = new
            if owner is not None:
                self.owner[mpn] = owner

    def free_pages(self) -> int:
        """Machine pages not in use (never handed out, or given back)."""
        return len(self._free) + (self.npages - self._next)

    def stats(self) -> dict:
        return {"machine_pages": self.npages, "allocated": len(self.owner),
                "peak_allocated": self.peak, "allocations": self.allocations,
                "frees": self.frees}


class PMap:
    """One VM's guest-physical -> machine map, with a state per guest page."""

    STATS = {
        "resident": "guest pages backed by private machine pages",
        "shared": "guest pages backed by shared machine pages",
        "swapped": "guest pages on the swap disk (or on their way to or from it)",
        "allocated": "machine pages allocated for this VM (lazily, zeroed)",
        "lookups": "PMap lookups by the VMM",
    }

    def __init__(self, name: str, ram_bytes: int, machine: MachineMemory):
        self.name = name
        self.ram_bytes = ram_bytes
        self.npages = ram_bytes >> PAGE_SHIFT
        self.machine = machine
        self.mpn_of: dict[int, int] = {}     # every mappable ppn (resident or shared)
        self.ppn_of: dict[int, int] = {}     # private mpn -> its ppn
        self.shared: set[int] = set()        # ppns backed by a shared page
        self.shared_mpns: dict[int, int] = {}  # shared mpn -> how many of our ppns map it
        self.swapped: dict[int, tuple] = {}  # on-disk ppn -> its swap slot
        self.in_flight: dict[int, object] = {}  # ppn -> its swap I/O (swap.SwapIo)
        self.host = None                     # the Host, for synchronous swap-in/unshare
        self.lookups = 0
        self.allocated = 0
        self.version = 0                     # bumped by every (un)binding

    def state(self, ppn: int) -> str:
        if ppn in self.shared:
            return SHARED
        if ppn in self.mpn_of:
            return RESIDENT
        io = self.in_flight.get(ppn)
        if io is not None:
            return io.kind
        return SWAPPED if ppn in self.swapped else UNBACKED

    def check(self, ppn: int) -> None:
        if not 0 <= ppn < self.npages:
            raise BusError(ppn << PAGE_SHIFT, self.ram_bytes, "pa")

    def lookup(self, ppn: int) -> int | None:
        """The mpn backing ``ppn``, or None (not mappable now); BusError past RAM."""
        self.lookups += 1
        self.check(ppn)
        return self.mpn_of.get(ppn)

    def back(self, ppn: int) -> tuple[int, bool]:
        """The mpn backing ``ppn`` for the VMM to write (synchronously:
        read back from the disk, rescued from a write-out); returns (mpn,
        allocated_now)."""
        mpn = self.lookup(ppn)
        if mpn is not None:
            return mpn, False
        if self.host is not None and (ppn in self.swapped or ppn in self.in_flight):
            return self.host.back_now(self, ppn), False
        mpn = self.machine.alloc(self.name)
        self.bind(ppn, mpn)
        self.allocated += 1
        return mpn, True

    def bind(self, ppn: int, mpn: int) -> None:
        """ppn is now resident in the private machine page mpn."""
        assert ppn not in self.mpn_of and mpn not in self.ppn_of, (ppn, mpn)
        self.version += 1
        self.mpn_of[ppn] = mpn
        self.ppn_of[mpn] = ppn

    def unbind(self, ppn: int) -> int:
        """Forget ppn's machine page (private or shared); returns its mpn."""
        mpn = self.mpn_of.pop(ppn)
        self.version += 1
        if ppn in self.shared:
            self.shared.discard(ppn)
            n = self.shared_mpns[mpn] - 1
            if n:
                self.shared_mpns[mpn] = n
            else:
                del self.shared_mpns[mpn]
        else:
            del self.ppn_of[mpn]
        return mpn

    def bind_shared(self, ppn: int, mpn: int) -> None:
        assert ppn not in self.mpn_of, ppn
        self.version += 1
        self.mpn_of[ppn] = mpn
        self.shared.add(ppn)
        self.shared_mpns[mpn] = self.shared_mpns.get(mpn, 0) + 1

    def owns(self, mpn: int) -> bool:
        """May this VM's guest reach machine page ``mpn``?  Only a page it
        holds mapped, or a shared page one of its guest pages is bound to."""
        state = self.machine.state.get(mpn)
        if state == MAPPED:
            return self.machine.owner[mpn] == self.name and mpn in self.ppn_of
        return state == SHARED_PAGE and mpn in self.shared_mpns

    def items(self):
        return sorted(self.mpn_of.items())

    def stats(self) -> dict:
        return {"resident": len(self.mpn_of) - len(self.shared), "shared": len(self.shared),
                "swapped": len(self.swapped) + len(self.in_flight),
                "allocated": self.allocated, "lookups": self.lookups}


class GuestPhys:
    """Guest-physical memory seen through a PMap: what the VMM (walking the
    guest's tables, emulating, loading the image) reads and writes.

    Reading an unbacked page sees zeros and allocates nothing; writing backs
    it.  A page on the disk or with swap I/O in flight is read where its
    bytes are (no disk time: the VMM's own accesses are synchronous, see
    docs/DECISIONS.md) and brought back for a write.  An address past guest
    RAM is a BusError, as natively.
    """

    def __init__(self, pmap: PMap):
        self.pmap = pmap
        self.machine = pmap.machine.mem
        self.size = pmap.ram_bytes
        self.on_write = None    # callable(mpn): translated code on it is stale

    def _page_for_read(self, pa: int):
        ppn = pa >> PAGE_SHIFT
        pmap = self.pmap
        pmap.check(ppn)
        mpn = pmap.mpn_of.get(ppn)
        if mpn is not None:
            return self.machine.page(mpn)
        if pmap.host is not None and (ppn in pmap.swapped or ppn in pmap.in_flight):
            return pmap.host.peek(pmap, ppn)
        return None

    def _mpn_for_write(self, ppn: int) -> int:
        pmap = self.pmap
        if ppn in pmap.shared and pmap.host is not None:
            return pmap.host.unshare_now(pmap, ppn)
        return pmap.back(ppn)[0]

    def read32(self, pa: int) -> int:
        off = pa & 0xFFF
        mpn = self.pmap.mpn_of.get(pa >> PAGE_SHIFT)
        if mpn is not None and off <= 0xFFC:            # (the guest walks: inline)
            page = self.machine.pages.get(mpn)
            if page is not None:
                return _unpack32(page, off)[0]
        page = self._page_for_read(pa)
        if page is None:
            return 0
        return int.from_bytes(page[off:off + 4], "little")

    def write32(self, pa: int, value: int) -> None:
        mpn = self._mpn_for_write(pa >> PAGE_SHIFT)
        off = pa & 0xFFF
        self.machine.page(mpn)[off:off + 4] = (value & 0xFFFFFFFF).to_bytes(4, "little")
        if self.on_write is not None:
            self.on_write(mpn)

    def read(self, pa: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            off = pa & 0xFFF
            chunk = min(n, 4096 - off)
            page = self._page_for_read(pa)
            out += bytes(chunk) if page is None else page[off:off + chunk]
            pa += chunk
            n -= chunk
        return bytes(out)

    def write(self, pa: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            off = pa & 0xFFF
            chunk = min(len(data) - pos, 4096 - off)
            mpn = self._mpn_for_write(pa >> PAGE_SHIFT)
            self.machine.page(mpn)[off:off + chunk] = data[pos:pos + chunk]
            if self.on_write is not None:
                self.on_write(mpn)
            pa += chunk
            pos += chunk

    def sha256(self) -> str:
        """SHA-256 of all guest-physical memory, unbacked pages as zeros."""
        return self.image().sha256()

    def image(self) -> MemoryImage:
        """Guest-physical memory's contents now, for a digest computed when asked."""
        return MemoryImage(self.pmap.npages, self._backed_pages())

    def _backed_pages(self):
        """(ppn, bytes) of every guest page with contents, in ppn order."""
        pmap = self.pmap
        host = pmap.host
        extra = () if host is None else (*pmap.swapped, *pmap.in_flight)
        for ppn in sorted({*pmap.mpn_of, *extra}):
            mpn = pmap.mpn_of.get(ppn)
            if mpn is not None:
                yield ppn, self.machine.peek_page(mpn)
            else:
                yield ppn, host.peek(pmap, ppn)
