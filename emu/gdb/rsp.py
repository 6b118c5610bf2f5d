"""GDB's Remote Serial Protocol: the framing, both ways.

A packet is ``$data#cc``: ``cc`` two hex digits, the sum of the data's bytes
modulo 256.  The receiver answers ``+`` (good) or ``-`` (send it again)
unless both sides agreed to drop acknowledgements (``QStartNoAckMode``).
Outside packets, a lone byte 0x03 is an interrupt (the user pressed ^C).
Inside the data, ``}`` escapes the byte after it (XOR 0x20) and ``*n``
repeats the byte before it ``ord(n) - 29`` times (run-length encoding).
(GDB's manual, "Overview" and "Binary Data" of the Remote Protocol appendix.)

``Decoder.feed(bytes)`` turns a stream into events; it keeps no more than
``max_packet`` bytes of one packet, so a client sending a huge one costs a
bounded amount of memory (the packet is dropped and NAKed).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PACKET = 16384          # the PacketSize we announce (bytes of data), and accept
_ESCAPED = frozenset(b"$#}*")


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def hex_number(text: str) -> int:
    """A field of hex digits, as the protocol writes numbers: anything else
    (a sign, a space, Python's '_' separators, nothing) is a ValueError."""
    if not text or not _HEX_DIGITS.issuperset(text):
        raise ValueError(f"not a hex number: {text[:20]!r}")
    return int(text, 16)


@dataclass(frozen=True)
class Item:
    """What the decoder found: ``packet`` (data), ``ack``, ``nak``,
    ``interrupt``, or ``error`` (a line for the log: a bad checksum, a
    packet too long, bytes outside any packet)."""

    kind: str
    data: bytes = b""
    message: str = ""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    """Binary data as packet data: ``$ # } *`` escaped."""
    out = bytearray()
    for b in data:
        if b in _ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def frame(data: bytes) -> bytes:
    """``data`` (already escaped where it must be) as one packet."""
    return b"$" + data + b"#" + f"{checksum(data):02x}".encode()


def unescape(data: bytes) -> bytes:
    """Packet data back to bytes: escapes undone, run lengths expanded."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x7D and i + 1 < n:            # }x: x ^ 0x20
            out.append(data[i + 1] ^ 0x20)
            i += 2
        elif b == 0x2A and i + 1 < n and out:   # *n: the byte before, n - 29 more times
            out += bytes((out[-1],)) * (data[i + 1] - 29)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class Decoder:
    """A byte stream -> ``Item``s (see the module doc)."""

    def __init__(self, max_packet: int = MAX_PACKET):
        self.max_packet = max_packet
        self._state = "idle"       # idle | data | escape | sum1 | sum2 | skip
        self._data = bytearray()
        self._sum = ""
        self._garbage = 0
        self._skipped = 0

    @property
    def in_packet(self) -> bool:
        """In the middle of a packet (a disconnection now cuts one short)."""
        return self._state != "idle"

    def feed(self, chunk: bytes) -> list[Item]:
        out: list[Item] = []
        for b in chunk:
            state = self._state
            if state == "idle":
                if b == 0x24:                                   # $
                    self._flush_garbage(out)
                    self._state, self._data = "data", bytearray()
                elif b == 0x2B:                                 # +
                    out.append(Item("ack"))
                elif b == 0x2D:                                 # -
                    out.append(Item("nak"))
                elif b == 0x03:
                    self._flush_garbage(out)
                    out.append(Item("interrupt"))
                else:
                    self._garbage += 1
            elif state == "data":
                if b == 0x23:                                   # #
                    self._state, self._sum = "sum1", ""
                elif b == 0x24:                 # $ inside a packet: that one starts again
                    out.append(Item("error", message="a packet cut short by another '$'"))
                    self._data = bytearray()
                else:
                    self._data.append(b)
                    if b == 0x7D:
                        self._state = "escape"
                    if len(self._data) > self.max_packet:
                        self._state, self._skipped = "skip", len(self._data)
                        self._data = bytearray()
            elif state == "escape":
                self._data.append(b)
                self._state = "data"
            elif state == "sum1":
                self._sum, self._state = chr(b), "sum2"
            elif state == "sum2":
                self._sum += chr(b)
                self._state = "idle"
                data = bytes(self._data)
                self._data = bytearray()
                try:
                    ok = hex_number(self._sum) == checksum(data)
                except ValueError:
                    ok = False
                if ok:
                    out.append(Item("packet", unescape(data)))
                else:
                    out.append(Item("error", data=data, message=(
                        f"bad checksum {self._sum!r} (the data sum to {checksum(data):02x})")))
            elif state == "skip":                               # a packet too long
                self._skipped += 1
                if b == 0x23:
                    self._state = "skipsum1"
                    out.append(Item("error", data=b"too long", message=(
                        f"a packet of {self._skipped - 1:,} bytes dropped (at most "
                        f"{self.max_packet:,})")))
            elif state == "skipsum1":
                self._state = "skipsum2"
            else:                                               # skipsum2
                self._state = "idle"
        self._flush_garbage(out)
        return out

    def _flush_garbage(self, out: list[Item]) -> None:
        if self._garbage:
            out.append(Item("error", message=f"{self._garbage} byte"
                            f"{'s' if self._garbage != 1 else ''} outside any packet ignored"))
            self._garbage = 0
