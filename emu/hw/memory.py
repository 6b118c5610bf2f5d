"""Physical memory: a sparse store of 4 KiB pages.

The same class is guest RAM (native mode) and machine memory (shadow and
nested modes).  Pages exist only once touched, so a 1 GiB space costs what is
used.  Reading an untouched page sees zeros; an address at or beyond ``size``
is outside the memory and raises ``BusError``.
"""

from __future__ import annotations

import hashlib
from struct import Struct

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
ZERO_PAGE = bytes(PAGE_SIZE)
_U32 = Struct("<I")
_unpack32 = _U32.unpack_from
_pack32 = _U32.pack_into


class BusError(Exception):
    """An access to a physical address outside the memory."""

    def __init__(self, addr: int, size: int, space: str = "pa"):
        self.addr = addr
        self.size = size
        self.space = space
        super().__init__(f"{space} {addr:#010x} is outside memory "
                         f"({size >> 20} MiB)")


class PhysMem:
    """``size`` bytes of physical memory, allocated page by page."""

    def __init__(self, size: int, space: str = "pa"):
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError("memory size must be a positive multiple of 4 KiB")
        self.size = size
        self.npages = size >> PAGE_SHIFT
        self.space = space          # "pa" (guest RAM) or "ma" (machine)
        self.pages: dict[int, bytearray] = {}
        # Listeners told when a page with translated code is written.
        self.code_pages: set[int] = set()

    # --- pages -----------------------------------------------------------
    def page(self, pn: int) -> bytearray:
        """The page ``pn``, allocated (zeroed) on first use."""
        pg = self.pages.get(pn)
        if pg is None:
            if not 0 <= pn < self.npages:
                raise BusError(pn << PAGE_SHIFT, self.size, self.space)
            pg = self.pages[pn] = bytearray(PAGE_SIZE)
        return pg

    def peek_page(self, pn: int) -> bytes:
        """The page's bytes without allocating it (zeros if untouched)."""
        pg = self.pages.get(pn)
        if pg is None:
            if not 0 <= pn < self.npages:
                raise BusError(pn << PAGE_SHIFT, self.size, self.space)
            return ZERO_PAGE
        return pg

    def free_page(self, pn: int) -> None:
        self.pages.pop(pn, None)

    # --- words and bytes (slow path; the CPU's hot path uses pages) ------
    def read32(self, addr: int) -> int:
        off = addr & PAGE_MASK
        if off <= PAGE_SIZE - 4:
            pg = self.pages.get(addr >> PAGE_SHIFT)      # (peek_page, inline: the walks)
            if pg is not None:
                return _unpack32(pg, off)[0]
            return _unpack32(self.peek_page(addr >> PAGE_SHIFT), off)[0]
        return int.from_bytes(self.read(addr, 4), "little")

    def write32(self, addr: int, value: int) -> None:
        off = addr & PAGE_MASK
        if off <= PAGE_SIZE - 4:
            pg = self.pages.get(addr >> PAGE_SHIFT)
            _pack32(self.page(addr >> PAGE_SHIFT) if pg is None else pg, off,
                    value & 0xFFFFFFFF)
        else:
            self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def read8(self, addr: int) -> int:
        return self.peek_page(addr >> PAGE_SHIFT)[addr & PAGE_MASK]

    def write8(self, addr: int, value: int) -> None:
        self.page(addr >> PAGE_SHIFT)[addr & PAGE_MASK] = value & 0xFF

    def read(self, addr: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            off = addr & PAGE_MASK
            chunk = min(n, PAGE_SIZE - off)
            out += self.peek_page(addr >> PAGE_SHIFT)[off:off + chunk]
            addr += chunk
            n -= chunk
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            off = addr & PAGE_MASK
            chunk = min(len(data) - pos, PAGE_SIZE - off)
            self.page(addr >> PAGE_SHIFT)[off:off + chunk] = data[pos:pos + chunk]
            addr += chunk
            pos += chunk

    # --- whole-memory views ----------------------------------------------
    def sha256(self) -> str:
        """SHA-256 of all of memory, untouched pages as zeros."""
        return self.image().sha256()

    def image(self) -> MemoryImage:
        """The memory's contents now, for a digest computed when asked."""
        pages = self.pages
        return MemoryImage(self.npages, ((pn, pages[pn]) for pn in sorted(pages)))

    def touched(self) -> int:
        return len(self.pages)


_ZERO_MIB = bytes(1 << 20)
# Digests already computed, by a digest of the memory's non-zero pages: the
# runs of one guest in every mode end with the same memory, and SHA-256 of
# 16 MiB costs more than many a run.
_DIGESTS: dict[bytes, str] = {}
DIGESTS_KEPT = 256


class MemoryImage:
    """The contents of ``npages`` pages of memory at one moment: the pages
    that are not zeros, copied.  Its SHA-256 (of every page, zeros where
    none is kept) is computed when first asked: a run whose digest nobody
    reads does not pay for hashing its memory."""

    __slots__ = ("npages", "present", "_digest")

    def __init__(self, npages: int, pages):
        """``pages`` yields (pn, bytes), pn increasing."""
        self.npages = npages
        self.present = tuple((pn, bytes(data)) for pn, data in pages if data != ZERO_PAGE)
        self._digest: str | None = None

    def read(self, addr: int, n: int) -> bytes:
        """``n`` bytes from ``addr`` as they were (zeros where no page is kept)."""
        pages = dict(self.present)
        out = bytearray()
        while n > 0:
            off = addr & PAGE_MASK
            chunk = min(n, PAGE_SIZE - off)
            data = pages.get(addr >> PAGE_SHIFT)
            out += data[off:off + chunk] if data is not None else bytes(chunk)
            addr += chunk
            n -= chunk
        return bytes(out)

    def sha256(self) -> str:
        if self._digest is None:
            self._digest = _sha256_of(self.npages, self.present)
        return self._digest

    def __eq__(self, other) -> bool:
        if not isinstance(other, MemoryImage):
            return NotImplemented
        return self.sha256() == other.sha256()

    def __hash__(self) -> int:
        return hash(self.sha256())

    def __repr__(self) -> str:
        return f"MemoryImage({self.npages} pages, {len(self.present)} not zeros)"


def _sha256_of(npages: int, present: tuple) -> str:
    key = hashlib.blake2b(npages.to_bytes(4, "little"), digest_size=32)
    for pn, data in present:
        key.update(pn.to_bytes(4, "little"))
        key.update(data)
    k = key.digest()
    digest = _DIGESTS.get(k)
    if digest is None:
        h = hashlib.sha256()
        at = 0
        for pn, data in present:
            _hash_zeros(h, pn - at)
            h.update(data)
            at = pn + 1
        _hash_zeros(h, npages - at)
        if len(_DIGESTS) >= DIGESTS_KEPT:
            _DIGESTS.clear()
        digest = _DIGESTS[k] = h.hexdigest()
    return digest


def _hash_zeros(h, npages: int) -> None:
    nbytes = npages * PAGE_SIZE
    while nbytes >= len(_ZERO_MIB):
        h.update(_ZERO_MIB)
        nbytes -= len(_ZERO_MIB)
    if nbytes:
        h.update(_ZERO_MIB[:nbytes])
