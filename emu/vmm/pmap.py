"""Machine memory and the PMap.

``MachineMemory`` is the emulated host's RAM (the ``ma`` space): a finite
number of 4 KiB machine pages, handed out lazily and zeroed, each with an
owner -- a VM's PMap (guest memory) or the VMM itself (shadow tables,
nested tables).  The resource-control invariant is stated in owners: a guest
can reach a machine page only if its PMap owns it.

``PMap`` is one VM's map ppn -> mpn with a state per ppn:

    unbacked   no machine page yet (reads see zeros; the first touch allocates)
    resident   backed by a machine page the PMap owns
"""

from __future__ import annotations

from ..hw.memory import PAGE_SHIFT, BusError, PhysMem

UNBACKED, RESIDENT = "unbacked", "resident"
VMM_OWNER = "vmm"


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
        self.on_free = None     # callable(mpn): the CPU forgets code and TLB entries

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
        del self.owner[mpn]
        self.mem.free_page(mpn)
        self._free.append(mpn)
        self.frees += 1
        if self.on_free is not None:
            self.on_free(mpn)

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
        self.mpn_of: dict[int, int] = {}
        self.ppn_of: dict[int, int] = {}
        self.lookups = 0
        self.allocated = 0

    def state(self, ppn: int) -> str:
        return RESIDENT if ppn in self.mpn_of else UNBACKED

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
        mpn = self.machine.alloc(self.name)
        self.mpn_of[ppn] = mpn
        self.ppn_of[mpn] = ppn
        self.allocated += 1
        return mpn, True

    def owns(self, mpn: int) -> bool:
        return self.machine.owner.get(mpn) == self.name

    def items(self):
        return sorted(self.mpn_of.items())

    def stats(self) -> dict:
        return {"resident": len(self.mpn_of), "allocated": self.allocated,
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
        self.pmap.check(ppn)
        mpn = self.pmap.mpn_of.get(ppn)
        return None if mpn is None else self.machine.page(mpn)

    def read32(self, pa: int) -> int:
        page = self._page_for_read(pa)
        if page is None:
            return 0
        off = pa & 0xFFF
        return int.from_bytes(page[off:off + 4], "little")

    def write32(self, pa: int, value: int) -> None:
        mpn, _ = self.pmap.back(pa >> PAGE_SHIFT)
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
            mpn, _ = self.pmap.back(pa >> PAGE_SHIFT)
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
        for ppn in range(self.pmap.npages):
            mpn = mpn_of.get(ppn)
            if mpn is None:
                zero_run += 1
                continue
            if zero_run:
                _hash_zeros(h, zero_run)
                zero_run = 0
            h.update(self.machine.peek_page(mpn))
        if zero_run:
            _hash_zeros(h, zero_run)
        return h.hexdigest()
