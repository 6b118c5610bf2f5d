"""The GDB server: one client at a time, over TCP, speaking RSP.

``Server(target, host, port).serve()`` listens (on localhost unless told
otherwise), takes a client, answers its packets until it detaches, kills
the machine or goes away, and then waits for the next one (a client that
vanishes leaves the machine as it was) -- unless the guest's run is over,
when the server ends with the client (as gdbserver ends with its process).
A client that sends garbage, bad checksums or oversized packets gets a NAK
and a log line; the session goes on.  Nothing a client sends ends in a
traceback: a request the target refuses is an ``Exx`` reply.

Packets answered (GDB's manual, "Packets"): ``?``, ``qSupported``,
``QStartNoAckMode``, ``qXfer:features:read``, ``g G p P m M X``, ``c s``,
``vCont``, ``bs bc`` (reverse), ``Z0-Z4 z0-z4``, ``qRcmd`` (monitor),
thread queries for the one thread, ``D``, ``k``, ``vKill``.
"""

from __future__ import annotations

import select
import socket
import threading
from binascii import Error as HexError
from binascii import hexlify, unhexlify
from contextlib import contextmanager, nullcontext

from ..errors import EmuError
from . import monitor
from .rsp import MAX_PACKET, Decoder, escape, frame, hex_number
from .target import StopReply, Target
from .tdesc import REGISTERS, target_xml

E_BAD, E_FAULT = "E01", "E14"
# Where each register ends in a ``g``/``G`` packet's bytes.
_REGISTER_ENDS = frozenset(sum(size for _, size, _ in REGISTERS[:i + 1])
                           for i in range(len(REGISTERS)))
SUPPORTED = (f"PacketSize={MAX_PACKET:x};qXfer:features:read+;QStartNoAckMode+;swbreak+;"
             "hwbreak+;ReverseStep+;ReverseContinue+;vContSupported+")


class Disconnected(Exception):
    pass


class Server:
    """Serves one ``Target`` (see the module doc)."""

    def __init__(self, target: Target, host: str = "127.0.0.1", port: int = 1234, *,
                 log=None, out=None):
        self.target = target
        self.host = host
        self.port = port
        self.log = log or (lambda line: None)
        self.out = out                 # callable(text): the guest's console output
        self.sock: socket.socket | None = None
        self.ended: str | None = None  # detach | kill | over (the run ended, the client left)
        self._printed = 0

    def listen(self) -> int:
        """Bind and listen; returns the port (an ephemeral one for port 0)."""
        self.sock = socket.create_server((self.host, self.port), reuse_port=False)
        self.port = self.sock.getsockname()[1]
        return self.port

    def serve(self) -> str:
        """Serve clients until one detaches or kills, or leaves after the
        run's end; returns which (``ended``)."""
        if self.sock is None:
            self.listen()
        try:
            while self.ended is None:
                conn, peer = self.sock.accept()
                self.log(f"client {peer[0]}:{peer[1]} attached")
                with conn:
                    Connection(self, conn).run()
        finally:
            self.sock.close()
        return self.ended

    def console(self) -> None:
        """Print what the guest wrote to its console since the last stop:
        once (going back and running forward again replays the same output,
        which was printed the first time)."""
        text = self.target.system.console.text()
        if self.out is not None and len(text) > self._printed:
            self.out(text[self._printed:])
        self._printed = max(self._printed, len(text))


class Connection:
    """One client's session."""

    def __init__(self, server: Server, conn: socket.socket):
        self.server = server
        self.target = server.target
        self.conn = conn
        self.log = server.log
        self.decoder = Decoder()
        self.ack = True
        self.last_sent = b""
        self.pending: list = []
        self.rest: list = []            # what the last read brought, not yet handled

    # --- the wire ----------------------------------------------------------------------
    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            data = data.encode("latin-1")
        packet = frame(data)
        self.last_sent = packet
        self._write(packet)

    def _write(self, raw: bytes) -> None:
        try:
            self.conn.sendall(raw)
        except OSError as e:
            raise Disconnected(str(e)) from None

    def _read(self) -> list:
        try:
            chunk = self.conn.recv(65536)
        except OSError as e:
            raise Disconnected(str(e)) from None
        if not chunk:
            if self.decoder.in_packet:
                raise Disconnected("the client went away in the middle of a packet")
            raise Disconnected("the client closed the connection")
        return self.decoder.feed(chunk)

    def run(self) -> None:
        try:
            while self.server.ended is None:
                self.rest, self.pending = list(self.pending or self._read()), []
                while self.rest:
                    item = self.rest.pop(0)
                    if item.kind == "packet":
                        if self.ack:
                            self._write(b"+")
                        self.handle(item.data)
                        if self.server.ended is not None:
                            return
                    elif item.kind == "nak":
                        if self.last_sent:
                            self._write(self.last_sent)
                    elif item.kind == "error":
                        self.log(f"bad input from the client: {item.message}")
                        if item.data and self.ack:
                            self._write(b"-")
                    elif item.kind == "interrupt":
                        self.log("interrupt while stopped: ignored")
        except Disconnected as e:
            if self.target.session.finished:
                # The run is over: a new client could only be told so.
                self.log(f"{e}; the run is over")
                self.server.ended = "over"
            else:
                self.log(f"{e}; waiting for the next client")

    # --- packets ----------------------------------------------------------------------------
    def handle(self, data: bytes) -> None:
        try:
            text = data.decode("latin-1")
            reply = self.dispatch(text, data)
        except EmuError as e:
            self.log(f"request refused: {e}")
            reply = E_BAD
        except (ValueError, IndexError, KeyError, OverflowError) as e:
            why = "hex data that does not decode" if isinstance(e, HexError) else \
                "a field missing or not a number" if isinstance(e, ValueError) else \
                "a number out of range" if isinstance(e, OverflowError) else \
                "a field missing"
            self.log(f"malformed packet {data[:40]!r}: {why}")
            reply = E_BAD
        if reply is not None:
            self.send(reply)

    def dispatch(self, text: str, data: bytes):
        t = self.target
        head = text[:1]
        if text == "?":
            return t.last.packet(t.system.cpu.eip)
        if text.startswith("qSupported"):
            return SUPPORTED
        if text == "QStartNoAckMode":
            self.send("OK")
            self.ack = False
            return None
        if text.startswith("qXfer:features:read:"):
            return self.xfer(text)
        if text in ("qAttached",) or text.startswith("qAttached:"):
            return "1"
        if text == "qC":
            return "QC1"
        if text == "qfThreadInfo":
            return "m1"
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qSymbol"):
            return "OK"
        if head == "H" or text.startswith("T"):
            return "OK"
        if text.startswith("qRcmd,"):
            return self.monitor(unhexlify(text[6:]).decode("utf-8", "replace"))
        if text == "g":
            return b"".join(t.register_values()).hex()
        if head == "G":
            raw = unhexlify(text[1:])
            if len(raw) not in _REGISTER_ENDS:  # (GDB sends them all; fewer: whole ones)
                self.log(f"G packet of {len(raw)} byte(s): not a whole number of registers")
                return E_BAD
            pos, changes, values = 0, [], t.register_values()
            for i, (_, size, _) in enumerate(REGISTERS):
                if pos + size > len(raw):
                    break
                if raw[pos:pos + size] != values[i]:
                    changes.append((i, raw[pos:pos + size]))
                pos += size
            t.write_registers(changes)
            return "OK"
        if head == "p":
            n = hex_number(text[1:])
            values = t.register_values()
            return values[n].hex() if n < len(values) else E_BAD
        if head == "P":
            n, value = text[1:].split("=", 1)
            t.write_register(hex_number(n), unhexlify(value))
            return "OK"
        if head == "m":
            addr, length = (hex_number(x) for x in text[1:].split(","))
            length = min(length, MAX_PACKET // 2)
            mem = t.read_memory(addr, length)
            return mem.hex() if mem is not None else E_FAULT
        if head == "M":
            where, hexdata = text[1:].split(":", 1)
            addr, length = (hex_number(x) for x in where.split(","))
            payload = unhexlify(hexdata)
            if len(payload) != length:
                return E_BAD
            return "OK" if t.write_memory(addr, payload) else E_FAULT
        if head == "X":
            colon = data.index(b":")
            addr, length = (hex_number(x) for x in data[1:colon].decode("latin-1").split(","))
            payload = data[colon + 1:]
            if len(payload) != length:
                return E_BAD
            return "OK" if length == 0 or t.write_memory(addr, payload) else E_FAULT
        if head in ("Z", "z"):
            kind, addr, length = text[1:].split(",")[:3]
            kind = hex_number(kind)
            if kind > 4:
                return ""
            ok = (t.insert if head == "Z" else t.remove)(kind, hex_number(addr),
                                                      hex_number(length))
            return "OK" if ok else E_BAD
        if head in ("c", "s") or head in ("C", "S"):
            if len(text) > 1 and head in "cs":
                eip = hex_number(text[1:])
                if eip >> 32:
                    return E_BAD
                t.write_register(8, eip.to_bytes(4, "little"))
            return self.resume("step" if head in "sS" else "cont")
        if text == "vCont?":
            return "vCont;c;C;s;S"
        if text.startswith("vCont;"):
            action = text[6:].split(";")[0].split(":")[0]
            if action[:1] in ("c", "C"):
                return self.resume("cont")
            if action[:1] in ("s", "S"):
                return self.resume("step")
            return E_BAD
        if text == "bs":
            return self.resume("reverse_step")
        if text == "bc":
            return self.resume("reverse_continue")
        if head == "D":
            self.send("OK")
            self.server.ended = "detach"
            return None
        if text == "k" or text.startswith("vKill"):
            if text.startswith("vKill"):
                self.send("OK")
            self.server.ended = "kill"
            return None
        return ""                         # not supported: the empty reply

    def xfer(self, text: str) -> str | bytes:
        annex, span = text[len("qXfer:features:read:"):].rsplit(":", 1)
        if annex != "target.xml":
            return "E00"
        offset, length = (hex_number(x) for x in span.split(","))
        doc = target_xml().encode()
        chunk = doc[offset:offset + min(length, MAX_PACKET - 16)]
        return (b"l" if offset + len(chunk) >= len(doc) else b"m") + escape(chunk)

    def monitor(self, line: str) -> str:
        # (the client's text, on this terminal: control characters shown, not sent)
        self.log(f"monitor {line if line.isprintable() else repr(line)}")
        try:
            with self._watching():                  # (a last-write search)
                out = monitor.run(self.target.session, line)
        except EmuError as e:
            out = f"error: {e}\n"
        for i in range(0, len(out), 2000):
            self.send("O" + hexlify(out[i:i + 2000].encode()).decode())
        return "OK"

    @contextmanager
    def _watching(self):
        """While a command runs, ^C stops it (the session's ``interrupted``);
        what else the client sends meanwhile is read after it."""
        # A ^C that came in the same read as the command's packet counts too.
        early = any(i.kind == "interrupt" for i in self.rest)
        self.rest = [i for i in self.rest if i.kind != "interrupt"]
        stop = _Interrupter(self.conn, self.target.session, early)
        try:
            yield
        finally:
            self.pending = self.decoder.feed(stop.finish())

    def resume(self, how: str) -> str:
        t = self.target
        with nullcontext() if how == "step" else self._watching():
            reply: StopReply = getattr(t, how)()
        self.server.console()
        if reply.message:
            self.log(reply.message)
        return reply.packet(t.system.cpu.eip)


class _Interrupter:
    """While the machine runs, watch the socket for ^C (0x03)."""

    def __init__(self, conn: socket.socket, session, hit: bool = False):
        self.conn = conn
        self.session = session
        self.extra = b""
        # Once hit, the flag is set again every tick: the command may clear it
        # as it begins, after the ^C arrived.
        self.hit = hit
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            if self.hit:
                self.session.interrupted = True
            try:
                ready, _, _ = select.select([self.conn], [], [], 0.05)
                if not ready:
                    continue
                chunk = self.conn.recv(4096)
            except (OSError, ValueError):
                return
            if not chunk:
                self.session.interrupted = True
                return
            if b"\x03" in chunk:
                self.hit = self.session.interrupted = True
                chunk = chunk.replace(b"\x03", b"", 1)
            self.extra += chunk

    def finish(self) -> bytes:
        self._done.set()
        self._thread.join()
        return self.extra
