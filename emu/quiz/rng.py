"""A small deterministic random-number generator for the quiz generators.

The generators must give the same problem for the same seed on any machine,
with any Python and any hash seed.  Python's ``random`` is stable in
practice, but its seeding and helpers are not a documented contract across
versions; this one is: splitmix64 (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014), a seed made from SHA-256 of
the problem's name, and helpers built only on exact integer arithmetic.
"""

from __future__ import annotations

import hashlib

MASK64 = (1 << 64) - 1


class Rng:
    """splitmix64 with the few helpers the generators use."""

    def __init__(self, name: str):
        """``name`` says which problem this is (kind, seed, number ...)."""
        self.state = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")

    def next64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), by rejection (no modulo bias)."""
        if n <= 0:
            raise ValueError("below() needs a positive bound")
        limit = (1 << 64) - (1 << 64) % n
        while True:
            x = self.next64()
            if x < limit:
                return x % n

    def between(self, lo: int, hi: int) -> int:
        """A uniform integer in [lo, hi] (both included)."""
        return lo + self.below(hi - lo + 1)

    def chance(self, numerator: int, denominator: int) -> bool:
        """True with probability numerator/denominator."""
        return self.below(denominator) < numerator

    def choice(self, items):
        items = list(items)
        return items[self.below(len(items))]

    def sample(self, items, k: int) -> list:
        """``k`` distinct items of ``items``, in the order drawn."""
        pool = list(items)
        if k > len(pool):
            raise ValueError("sample larger than the population")
        out = []
        for _ in range(k):
            out.append(pool.pop(self.below(len(pool))))
        return out

    def shuffle(self, items) -> list:
        return self.sample(items, len(items))
