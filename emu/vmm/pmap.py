"""Machine memory and the PMap.

``MachineMemory`` is the emulated host's RAM (the ``ma`` space): a finite
number of 4 KiB machine pages, handed out lazily and zeroed, each with an
owner -- a VM's PMap (guest memory) or the VMM itself (shadow tables,
nested tables).  The resource-control invariant is stated in owners: a guest
can reach a machine page only if its PMap owns it.

``PMap`` is one VM's map ppn -> mpn with a state per ppn:

    unbacked   no machine page yet (reads see zeros; the first touch allocates)
    resident   backed by a machine page the PMap owns
    shared     backed by a machine page several guest pages share, read-only
               (content-based sharing); a write gets a private copy
    swapped    its contents are on the swap disk; the next touch reads them back

Reclaim, swapping and sharing are the ``Host``'s (``host.py``): it owns the
machine memory of all VMs.
"""

from __future__ import annotations

from ..hw.memory import PAGE_SHIFT, BusError, PhysMem

UNBACKED, RESIDENT, SHARED, SWAPPED = "unbacked", "resident", "shared", "swapped"
VMM_OWNER = "vmm"
SHARED_OWNER = "shared"        # a machine page shared by several guest pages


class OutOfMachineMemory(Exception):
    """No free machine page is left."""


class MachineMemory:
    """Machine pages with owners; allocation is lazy and zeroes the page."""

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
        self.owner: dict[int, str] = {}
        self._free: list[int] = []
        self._next = 1          # mpn 0 is never handed out: a zero spte stays invalid
        self.allocations = 0
        self.frees = 0
        self.peak = 0
        self.on_free = None     # callable(mpn, owner): translations of it must go

    def alloc(self, owner: str) -> int:
        """A zeroed machine page for ``owner``; raises OutOfMachineMemory."""
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
        self.owner[mpn] = owner
        self.allocations += 1
        if len(self.owner) > self.peak:
            self.peak = len(self.owner)
        return mpn

    def free(self, mpn: int) -> None:
        owner = self.owner.pop(mpn)
        self.mem.free_page(mpn)
        self._free.append(mpn)
        self.frees += 1
        if self.on_free is not None:
            self.on_free(mpn, owner)

    def free_pages(self) -> int:
        """Machine pages not in use (never handed out, or given back)."""
        return len(self._free) + (self.npages - self._next)

    def stats(self) -> dict:
        return {"machine_pages": self.npages, "allocated": len(self.owner),
                "peak_allocated": self.peak, "allocations": self.allocations,
                "frees": self.frees}


class PMap:
    """One VM's guest-physical -> machine map."""

    STATS = {
        "resident": "guest pages backed by machine pages",
        "allocated": "machine pages allocated for this VM (lazily, zeroed)",
        "lookups": "PMap lookups by the VMM",
    }

    def __init__(self, name: str, ram_bytes: int, machine: MachineMemory):
        self.name = name
        self.ram_bytes = ram_bytes
        self.npages = ram_bytes >> PAGE_SHIFT
        self.machine = machine
        self.mpn_of: dict[int, int] = {}     # every backed ppn (private or shared)
        self.ppn_of: dict[int, int] = {}     # private mpn -> its ppn
        self.shared: set[int] = set()        # ppns backed by a shared page
        self.shared_mpns: dict[int, int] = {}  # shared mpn -> how many of our ppns map it
        self.swapped: dict[int, tuple] = {}  # ppn -> its key on the swap disk
        self.host = None                     # the Host, for synchronous swap-in/unshare
        self.lookups = 0
        self.allocated = 0

    def state(self, ppn: int) -> str:
        if ppn in self.shared:
            return SHARED
        if ppn in self.mpn_of:
            return RESIDENT
        return SWAPPED if ppn in self.swapped else UNBACKED

    def check(self, ppn: int) -> None:
        if not 0 <= ppn < self.npages:
            raise BusError(ppn << PAGE_SHIFT, self.ram_bytes, "pa")

    def lookup(self, ppn: int) -> int | None:
        """The mpn backing ``ppn``, or None (unbacked); BusError past RAM."""
        self.lookups += 1
        self.check(ppn)
        return self.mpn_of.get(ppn)

    def back(self, ppn: int) -> tuple[int, bool]:
        """The mpn backing ``ppn``, allocating one if unbacked; returns
        (mpn, allocated_now)."""
        mpn = self.lookup(ppn)
        if mpn is not None:
            return mpn, False
        if ppn in self.swapped and self.host is not None:
            return self.host.swap_in_now(self, ppn), False
        mpn = self.machine.alloc(self.name)
        self.bind(ppn, mpn)
        self.allocated += 1
        return mpn, True

    def bind(self, ppn: int, mpn: int) -> None:
        """ppn is now backed by the private machine page mpn."""
        self.mpn_of[ppn] = mpn
        self.ppn_of[mpn] = ppn

    def unbind(self, ppn: int) -> int:
        """Forget ppn's machine page (private or shared); returns its mpn."""
        mpn = self.mpn_of.pop(ppn)
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
        self.mpn_of[ppn] = mpn
        self.shared.add(ppn)
        self.shared_mpns[mpn] = self.shared_mpns.get(mpn, 0) + 1

    def owns(self, mpn: int) -> bool:
        """May this VM's guest reach machine page ``mpn``?"""
        owner = self.machine.owner.get(mpn)
        return owner == self.name or (owner == SHARED_OWNER and mpn in self.shared_mpns)

    def items(self):
        return sorted(self.mpn_of.items())

    def stats(self) -> dict:
        return {"resident": len(self.mpn_of) - len(self.shared), "shared": len(self.shared),
                "swapped": len(self.swapped), "allocated": self.allocated,
                "lookups": self.lookups}


class GuestPhys:
    """Guest-physical memory seen through a PMap: what the VMM (walking the
    guest's tables, emulating, loading the image) reads and writes.

    Reading an unbacked page sees zeros and allocates nothing; writing backs
    it.  An address past guest RAM is a BusError, as natively.
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
        if mpn is None and ppn in pmap.swapped and pmap.host is not None:
            mpn = pmap.host.swap_in_now(pmap, ppn)
        return None if mpn is None else self.machine.page(mpn)

    def _mpn_for_write(self, ppn: int) -> int:
        pmap = self.pmap
        if ppn in pmap.shared and pmap.host is not None:
            return pmap.host.unshare_now(pmap, ppn)
        return pmap.back(ppn)[0]

    def read32(self, pa: int) -> int:
        page = self._page_for_read(pa)
        if page is None:
            return 0
        off = pa & 0xFFF
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
        import hashlib

        from ..hw.memory import _hash_zeros
        h = hashlib.sha256()
        zero_run = 0
        mpn_of = self.pmap.mpn_of
        swapped = self.pmap.swapped
        disk = self.pmap.host.disk if self.pmap.host is not None else None
        for ppn in range(self.pmap.npages):
            mpn = mpn_of.get(ppn)
            if mpn is None:
                if ppn in swapped and disk is not None:
                    if zero_run:
                        _hash_zeros(h, zero_run)
                        zero_run = 0
                    h.update(disk.peek(swapped[ppn]))
                    continue
                zero_run += 1
                continue
            if zero_run:
                _hash_zeros(h, zero_run)
                zero_run = 0
            h.update(self.machine.peek_page(mpn))
        if zero_run:
            _hash_zeros(h, zero_run)
        return h.hexdigest()
