"""``emu gdb``: the remote-protocol framing, a server that survives bad
clients, and real GDB sessions (Debian's gdb in batch mode) with their
exact output.

Every socket and subprocess has a timeout: a failure cannot hang the suite.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from emu import programs
from emu.cli import load
from emu.gdb.rsp import Decoder, checksum, escape, frame, unescape
from emu.gdb.server import Server
from emu.gdb.target import Target
from emu.gdb.tdesc import REGISTERS, target_xml
from emu.system import Config
from emu.ui.session import Session

TIMEOUT = 30


# --- framing ----------------------------------------------------------------------------

def test_a_packet_is_framed_with_its_checksum():
    assert checksum(b"qSupported") == 0x37
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"") == b"$#00"


def test_binary_data_is_escaped_and_run_lengths_are_expanded():
    raw = bytes([0x24, 0x23, 0x7D, 0x2A, 0x41])
    assert escape(raw) == b"}\x04}\x03}]}\x0aA"
    assert unescape(escape(raw)) == raw
    assert unescape(b"0* ") == b"0000"                 # ' ' = 32: 3 more
    assert unescape(b"m1*\"0,4") == b"m1111110,4"      # '"' = 34: 5 more


def test_the_decoder_finds_packets_acks_interrupts_and_bad_input():
    d = Decoder(max_packet=8)
    items = d.feed(b"+-\x03junk$g#67$m0,4#%02x" % checksum(b"m0,4"))
    assert [(i.kind, i.data) for i in items if i.kind != "error"] == [
        ("ack", b""), ("nak", b""), ("interrupt", b""), ("packet", b"g"), ("packet", b"m0,4")]
    assert [i.message for i in items if i.kind == "error"] == \
        ["4 bytes outside any packet ignored"]
    bad = d.feed(b"$g#00")
    assert bad[0].kind == "error" and bad[0].message.startswith("bad checksum '00'")
    big = d.feed(b"$" + b"A" * 20 + b"#00$?#3f")
    assert big[0].message == "a packet of 20 bytes dropped (at most 8)"
    assert big[1].kind == "packet" and big[1].data == b"?"


def test_a_packet_split_anywhere_decodes_the_same():
    stream = b"+$qSupported:multiprocess+;swbreak+#c8$}]x#" + b"%02x" % checksum(b"}]x")
    whole = [(i.kind, i.data) for i in Decoder().feed(stream)]
    for cut in range(1, len(stream)):
        d = Decoder()
        parts = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert [(i.kind, i.data) for i in parts] == whole
    assert whole[-1] == ("packet", b"}x")
    d = Decoder()
    assert d.feed(b"$ab") == [] and d.in_packet


def test_the_target_description_has_the_core_and_control_registers():
    doc = ET.fromstring(target_xml())
    features = {f.get("name"): [r.get("name") for r in f.iter("reg")]
                for f in doc.iter("feature")}
    assert features["org.gnu.gdb.i386.core"][:16] == [
        "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags",
        "cs", "ss", "ds", "es", "fs", "gs"]
    assert features["org.emu.control"] == ["cr0", "cr2", "cr3", "cr4"]
    numbers = [int(r.get("regnum")) for r in doc.iter("reg")]
    assert numbers == list(range(len(REGISTERS)))


# --- a server in a thread, raw clients --------------------------------------------------------

OPEN: list = []           # clients a failed test left open (the fixture closes them)


class RawClient:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        OPEN.append(self)

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def read(self, n: int = 1) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self) -> str:
        """The next packet (acknowledged), its checksum checked."""
        while self.read(1) != b"$":
            pass
        data = b""
        while not data.endswith(b"#"):
            data += self.read(1)
        data = data[:-1]
        assert int(self.read(2), 16) == checksum(data)
        self.send(b"+")
        return data.decode("latin-1")

    def ask(self, text: str, ack: bool = True) -> str:
        self.send(frame(text.encode("latin-1")))
        if ack:
            assert self.read(1) == b"+"
        return self.reply()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def server(request, tmp_path):
    """A server on ``demand``, or on the program a test names with
    ``@pytest.mark.program(SOURCE)``."""
    mark = request.node.get_closest_marker("program")
    config = Config(mode="shadow")
    if mark is None:
        image = load(programs.resolve("demand"))
    else:
        config = Config(mode="shadow", max_cycles=1 << 62)     # it runs until stopped
        path = tmp_path / "prog.s"
        path.write_text(mark.args[0])
        image = load(str(path))
    logs: list[str] = []
    srv = Server(Target(Session(image, config)), "127.0.0.1", 0,
                 log=logs.append)
    port = srv.listen()
    failures = []

    def serve():
        try:
            srv.serve()
        except BaseException as e:      # the test fails on any
            failures.append(e)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, logs
    for c in OPEN:
        c.close()
    OPEN.clear()
    if srv.ended is None:
        c = RawClient(port)
        c.send(frame(b"k"))
        c.close()
    thread.join(TIMEOUT)
    assert not thread.is_alive() and not failures, failures


def test_garbage_bad_checksums_and_huge_packets_get_a_log_line_and_a_nak(server):
    port, logs = server
    c = RawClient(port)
    c.send(b"hello\xff\x00")
    assert c.ask("?") == "T0508:00100000;thread:1;"
    c.send(b"$g#00")
    assert c.read(1) == b"-"
    c.send(b"$" + b"A" * 100_000 + b"#00")
    assert c.read(1) == b"-"
    assert c.ask("qC") == "QC1"
    assert logs[1:] == [
        "bad input from the client: 7 bytes outside any packet ignored",
        "bad input from the client: bad checksum '00' (the data sum to 67)",
        "bad input from the client: a packet of 100,000 bytes dropped (at most 16,384)",
    ]
    c.close()


def test_a_monitor_line_is_logged_without_its_control_characters(server):
    # The log goes to the terminal emu runs in: an escape sequence from the
    # client is shown, not acted on.
    port, logs = server
    c = RawClient(port)
    for line in ("mode\x1b[2J", "mode"):
        out = c.ask("qRcmd," + line.encode().hex())
        while out != "OK":          # the output's O packets, then OK
            out = c.reply()
    assert logs[1:] == ["monitor 'mode\\x1b[2J'", "monitor mode"]
    c.close()


def test_a_client_that_vanishes_mid_packet_leaves_the_server_to_the_next(server):
    port, logs = server
    c = RawClient(port)
    assert c.ask("Z0,11a0,1") == "OK"
    c.send(b"$vCont;")
    c.close()
    c = RawClient(port)
    assert c.ask("vCont;c").startswith("T0508:a0110000;thread:1;swbreak:;")
    c.close()
    assert "the client went away in the middle of a packet; waiting for the next client" \
        in logs


def test_requests_answered_refused_or_unsupported(server):
    port, logs = server
    c = RawClient(port)
    assert "ReverseStep+;ReverseContinue+" in c.ask("qSupported:swbreak+")
    assert c.ask("QStartNoAckMode") == "OK"
    regs = bytes.fromhex(c.ask("g", ack=False))
    assert len(regs) == sum(size for _, size, _ in REGISTERS)
    assert c.ask("p8", ack=False) == "00100000"            # eip, little-endian
    assert c.ask("m1000,6", ack=False) == load("demand").segments[0][1][:6].hex()
    assert c.ask("m7ffff000,4", ack=False) == "E14"          # paging off: past RAM
    assert c.ask("mzz,4", ack=False) == "E01"
    assert c.ask("Z7,1000,1", ack=False) == ""
    assert c.ask("qFrobnicate", ack=False) == ""
    assert c.ask("P2a=01000000", ack=False) == "E01"
    xml = c.ask("qXfer:features:read:target.xml:0,3fff", ack=False)
    assert xml.startswith("l<?xml") and "cr3" in xml
    out = c.ask("qRcmd," + b"mode".hex(), ack=False)
    text = b""
    while out != "OK":
        text += bytes.fromhex(out[1:])
        out = c.reply()
    assert out == "OK"
    assert text.decode().splitlines()[0] == "mode shadow (trace-cache)"
    assert c.ask("s", ack=False).startswith("T0508:06100000;")
    assert c.ask("bs", ack=False).startswith("T0508:00100000;")
    assert c.ask("bs", ack=False) == "T0508:00100000;thread:1;replaylog:begin;"
    assert c.ask("M1000,2:zz", ack=False) == "E01"
    assert c.ask("Z2", ack=False) == "E01"
    assert c.ask("Z2,ffffffff,4", ack=False) == "E01"        # a range past 4 GiB
    assert c.ask("Z2,fffffffc,4", ack=False) == "OK"         # ... its last dword is not
    assert c.ask("m100000000,4", ack=False) == "E14"         # past 4 GiB: not cut to 0
    assert c.ask("M100001000,1:00", ack=False) == "E14"
    assert c.ask("Z0,100001000,1", ack=False) == "E01"
    assert c.ask("m1000,-4", ack=False) == "E01"
    # numbers are hex digits only: no sign, space or '_' (Python's int took them)
    assert c.ask("p-1", ack=False) == "E01"                  # not the last register
    assert c.ask("m1_000,4", ack=False) == "E01"
    assert c.ask("m+1000,4", ack=False) == "E01"
    assert c.ask("m 1000,4", ack=False) == "E01"
    assert c.ask("Z-1,1000,1", ack=False) == "E01"
    assert c.ask("c100000000", ack=False) == "E01"           # an eip past 32 bits
    assert c.ask("G00", ack=False) == "E01"                  # not a whole register
    assert c.ask("G" + regs[:10].hex(), ack=False) == "E01"
    assert c.ask("G" + regs.hex(), ack=False) == "OK"        # all of them, as GDB sends
    assert c.ask("G" + regs[:8].hex(), ack=False) == "OK"    # the first ones, whole
    # a refused register (cs) refuses the packet: nothing of it is written
    assert c.ask("G" + "00" * len(regs), ack=False) == "E01"
    assert c.ask("g", ack=False) == regs.hex()
    c.close()
    assert "G packet of 1 byte(s): not a whole number of registers" in logs
    assert "malformed packet b'mzz,4': a field missing or not a number" in logs
    assert "malformed packet b'M1000,2:zz': hex data that does not decode" in logs
    assert "malformed packet b'Z2': a field missing or not a number" in logs


def test_reverse_continue_with_no_earlier_hit_is_the_start_of_the_history(server):
    # A breakpoint that stopped the run only once: going back finds no hit
    # before it, so the reply says the history begins there (a "swbreak"
    # at an address with no breakpoint sent GDB into a loop of bc).
    port, logs = server
    c = RawClient(port)
    assert c.ask("Z0,11a0,1") == "OK"
    assert c.ask("c").startswith("T0508:a0110000;thread:1;swbreak:;")
    assert c.ask("bc") == "T0508:00100000;thread:1;replaylog:begin;"
    assert c.ask("bc") == "T0508:00100000;thread:1;replaylog:begin;"
    c.close()


def test_a_watchpoint_fires_after_the_access_and_backwards_before_it(server):
    # The heap's first store faults (demand paging, then a hidden fault under
    # shadow paging): no hit, as a debug register would not fire; the retried
    # store is.  Going backwards, GDB's convention: stopped before the store.
    port, logs = server
    c = RawClient(port)
    assert c.ask("Z2,480000,4") == "OK"
    assert c.ask("c") == "T0508:3d004000;thread:1;watch:480000;"        # after the store
    assert c.ask("m480000,4") == "e8030000"                              # 1000
    assert c.ask("bc") == "T0508:36004000;thread:1;watch:480000;"       # before it
    assert c.ask("m480000,4") == "00000000"
    assert c.ask("bc") == "T0508:00100000;thread:1;replaylog:begin;"
    assert c.ask("z2,480000,4") == "OK"
    assert c.ask("Z4,481000,4") == "OK"          # an access watchpoint: the first is a store
    assert c.ask("c") == "T0508:3d004000;thread:1;awatch:481000;"
    c.close()


def test_the_console_is_printed_once_when_the_run_goes_back_and_forth():
    printed: list[str] = []
    srv = Server(Target(Session(load(programs.resolve("demand")), Config(mode="shadow"))),
                 "127.0.0.1", 0, out=printed.append)
    t = srv.target
    t.insert(0, 0x11A0, 1)
    t.cont()
    srv.console()
    first = "".join(printed)
    assert first == "demand: two processes, demand paging, a segfault\n"
    t.reverse_continue()
    srv.console()
    t.cont()
    srv.console()
    t.remove(0, 0x11A0, 1)
    t.cont()
    srv.console()
    text = "".join(printed)
    assert text.count(first) == 1
    assert text.endswith("demand: all processes done after 12 page-ins\n")
    assert text == t.system.console.text()


@pytest.mark.program("org 0x1000\n_start: jmp _start\n")
def test_an_interrupt_stops_a_running_guest(server):
    # A guest that never ends: the interrupt cannot arrive after it powered off.
    port, logs = server
    c = RawClient(port)
    c.send(frame(b"vCont;c"))
    assert c.read(1) == b"+"
    c.send(b"\x03")
    reply = c.reply()
    assert reply.startswith("T02")
    c.close()


def _with_history(port) -> RawClient:
    """A client of a run that went on for half a second (a long history),
    stopped by ^C."""
    c = RawClient(port)
    c.send(frame(b"c"))
    assert c.read(1) == b"+"
    time.sleep(0.5)
    c.send(b"\x03")
    assert c.reply().startswith("T02")
    return c


@pytest.mark.program("org 0x1000\n_start: inc eax\n jmp _start\nnever: hlt\n")
def test_an_interrupt_stops_a_reverse_continue_where_it_began(server):
    # A long history and a breakpoint never hit: reverse-continue would
    # replay all of it, one instruction at a time.  ^C stops it (SIGINT)
    # with the machine where it was; the server answers what comes next.
    port, logs = server
    c = _with_history(port)
    regs = c.ask("g")
    assert c.ask("Z0,1003,1") == "OK"              # 'never': not reached
    c.send(frame(b"bc"))
    assert c.read(1) == b"+"
    time.sleep(0.3)
    t0 = time.monotonic()
    c.send(b"\x03")
    assert c.reply().startswith("T02")
    assert time.monotonic() - t0 < 5
    assert c.ask("g") == regs
    assert c.ask("z0,1003,1") == "OK"
    c.close()


@pytest.mark.program("org 0x1000\n_start: inc eax\n jmp _start\nnever: hlt\n")
def test_an_interrupt_stops_a_monitor_last_write_search(server):
    # 'monitor last-write' of a dword nothing writes replays the whole
    # history; ^C gives it up.
    port, logs = server
    c = _with_history(port)
    c.send(frame(b"qRcmd," + b"last-write va 0x1010".hex().encode()))
    assert c.read(1) == b"+"
    time.sleep(0.3)
    t0 = time.monotonic()
    c.send(b"\x03")
    text = b""
    out = c.reply()
    while out != "OK":
        text += bytes.fromhex(out[1:])
        out = c.reply()
    assert text.decode() == "last-write va 0x00001010: interrupted\n"
    assert time.monotonic() - t0 < 5
    assert c.ask("?").startswith("T02")             # still there, still answering
    c.close()


# --- the command line and real GDB -----------------------------------------------------------

def emu_gdb(*args) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "emu", "gdb", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    return p


def start(*args) -> tuple[subprocess.Popen, int]:
    p = emu_gdb(*args, "--port", "0")
    line = p.stdout.readline()
    m = re.search(r"waiting for GDB on 127\.0\.0\.1:(\d+) \(gdb: target remote :(\d+)\)",
                  line)              # this machine only, unless told otherwise
    assert m and m.group(1) == m.group(2), line + p.stderr.read()
    return p, int(m.group(2))


def gdb(elf, port: int, *commands: str) -> list[str]:
    argv = ["gdb", "-nx", "-batch", str(elf), "-ex", f"target remote :{port}"]
    for cmd in commands:
        argv += ["-ex", cmd]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=TIMEOUT)
    return p.stdout.splitlines()


@pytest.fixture()
def elf(tmp_path):
    out = tmp_path / "demand.elf"
    subprocess.run([sys.executable, "-m", "emu", "asm", "demand", "--elf", str(out)],
                   check=True, capture_output=True, timeout=TIMEOUT)
    return out


PTE = 0x102FFC          # the gpte the kernel's #PF handler writes first (va 0x7ff000)


def test_a_gdb_session_breaks_steps_watches_and_goes_back(elf):
    src = programs.resolve("demand")
    server, port = start("demand", "--mode", "shadow")
    try:
        lines = gdb(elf, port, "break page_fault", "continue", "info registers",
                    "x/4wx $esp", "stepi", f"watch *(unsigned int *){PTE:#x}", "continue",
                    "reverse-stepi", "delete 2", "reverse-continue", "monitor walk 0x7ff000",
                    "detach")
        out, err = server.communicate(timeout=TIMEOUT)
    finally:
        server.kill()
    expected = EXPECTED_SESSION.format(src=src).splitlines()
    assert lines == expected
    assert server.returncode == 0
    # Detached, the guest ran on to its end; its console came out as it ran.
    assert out.endswith("demand: all processes done after 12 page-ins\n")
    assert "detached; the guest ran on: poweroff, powered off with status 0" in err


def test_a_gdb_session_can_kill_the_machine(elf):
    server, port = start("demand", "--mode", "native")
    try:
        lines = gdb(elf, port, "info registers eip", "kill")
        server.wait(timeout=TIMEOUT)
    finally:
        server.kill()
    src = programs.resolve("demand")
    assert lines == [f"_start () at {src}:41", "41\t    mov esp, KSTACK_TOP",
                     "eip            0x1000              0x1000 <_start>",
                     "Kill the program being debugged? (y or n) [answered Y; input not from "
                     "terminal]",
                     "[Inferior 1 (Remote target) killed]"]
    assert server.returncode == 0
    assert "killed by the debugger" in server.stderr.read()


@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
def test_the_server_ends_when_the_client_leaves_after_the_run_ended(elf, mode):
    # (as gdbserver ends with its process: a new client could only be told
    # that the target is not running)
    server, port = start("demand", "--mode", mode)
    try:
        lines = gdb(elf, port, "continue")
        out, err = server.communicate(timeout=TIMEOUT)
    finally:
        server.kill()
    assert lines[-1] == "[Inferior 1 (Remote target) exited normally]"
    assert server.returncode == 0
    assert out.endswith("demand: all processes done after 12 page-ins\n")
    assert err.splitlines()[-1] == ("emu gdb: the guest's run ended (poweroff, powered off "
                                    "with status 0) and the client left")


def test_a_students_vmm_is_debugged_like_the_built_in_one(elf, tmp_path):
    mine = tmp_path / "mine.py"
    mine.write_text("from emu.vmm.builtin import BuiltinShadowVmm\n\n\n"
                    "class Mine(BuiltinShadowVmm):\n    pass\n")
    server, port = start("demand", "--mode", "shadow", "--vmm", str(mine))
    try:
        lines = gdb(elf, port, "break page_fault", "continue", "monitor mode", "kill")
        server.wait(timeout=TIMEOUT)
    finally:
        server.kill()
    src = programs.resolve("demand")
    assert lines[4:7] == ["Breakpoint 1, page_fault () at " f"{src}:137",
                          "137\t    mov edx, cr2", f"mode shadow (trace-cache), VMM {mine}"]
    assert server.returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "argument --port: port 70000 is not between 0 and 65535"),
    (["--port", "x"], "argument --port: 'x' is not a port number"),
    (["--mode", "bare"], "argument --mode: invalid choice: 'bare'"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_options_are_one_line_and_status_2(args, message):
    p = subprocess.run([sys.executable, "-m", "emu", "gdb", "hello", *args],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and message in p.stderr and p.stdout == ""


def test_a_host_that_does_not_resolve_is_one_line_and_status_1():
    p = subprocess.run([sys.executable, "-m", "emu", "gdb", "hello", "--host", "256.1.1.1",
                        "--port", "0"], capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("emu: error: cannot listen on 256.1.1.1:0: ")
    assert "Unknown error" not in p.stderr


def test_the_server_listens_on_this_machine_only_by_default():
    srv = Server(Target(Session(load("hello"), Config())), port=0)
    srv.listen()
    try:
        assert srv.sock.getsockname()[0] == "127.0.0.1"
    finally:
        srv.sock.close()


def test_a_port_in_use_is_one_line_and_status_1():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "emu", "gdb", "hello", "--port", str(port)],
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 1
    assert p.stderr == f"emu: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


EXPECTED_SESSION = """\
_start () at {src}:41
41\t    mov esp, KSTACK_TOP
Breakpoint 1 at 0x11a0: file {src}, line 137.

Breakpoint 1, page_fault () at {src}:137
137\t    mov edx, cr2
eax            0xe                 14
ecx            0x0                 0
edx            0x0                 0
ebx            0x7ffc4             524228
esp            0x7ffc0             0x7ffc0
ebp            0x1                 0x1
esi            0x40018b            4194699
edi            0x0                 0
eip            0x11a0              0x11a0 <page_fault>
eflags         0x46                [ PF ZF ]
cs             0x8                 8
ss             0x10                16
ds             0x10                16
es             0x10                16
fs             0x10                16
gs             0x10                16
cr0            0x80010000          -2147418112
cr2            0x7ffffc            8388604
cr3            0x101000            1052672
cr4            0x0                 0
0x7ffc0:\t0x00001824\t0x00000000\t0x0040018b\t0x00000001
138\t    test dword [ebx + TF_CS], 3
Hardware watchpoint 2: *(unsigned int *)0x102ffc

Hardware watchpoint 2: *(unsigned int *)0x102ffc

Old value = 0
New value = 2097159
page_fault () at {src}:188
188\t    mov esi, msg_kernel
187\t    mov [esi + ecx*4], eax          ; not present -> present: no INVLPG needed

Breakpoint 1, page_fault () at {src}:137
137\t    mov edx, cr2
the guest's walk of va 0x007ff000 (CR3 = pa 0x00101000; a view: no A/D bit set)
  va 0x007ff000 = pdx 0x001 | ptx 0x3ff | off 0x000  (supervisor read)
    pde @ pa 0x00101004 = 0x00102027  [P W U A]
    pte @ pa 0x00102ffc = 0x00000000  [np]
    #PF not-present, error code 0x0 [-]
va 0x007ff000: the guest's walk and the shadow's entry
  guest:  pde @ pa 0x00101004 = 0x00102027  [P W U A]
  guest:  pte @ pa 0x00102ffc = 0x00000000  [np]
  guest:  #PF not-present, error code 0x0 [-]
  shadow: spde[0x001] in root mpn 0xc = 0x0000e027  [P W U A]
          spte[0x3ff] = 0x00000000  [np]
TLB: no entry for this page
[Inferior 1 (Remote target) detached]
"""
