"""``emu gdb PROG [--port N] [--host H] [machine options]``: serve a guest run
to GDB (``target remote :N``).  See docs/gdb.md."""

from __future__ import annotations

import sys

from ..errors import EmuError

DEFAULT_PORT = 1234


def _port(text: str) -> int:
    from ..cli import bounded
    return bounded(text, 0, 65535, "'{text}' is not a port number",
                   "port {value} is not between 0 and 65535")


def _mib(text: str) -> int:
    import argparse
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not a number") from None
    if not 1 <= value <= 1 << 16:
        raise argparse.ArgumentTypeError(f"{value} MiB is not between 1 and 65536")
    return value


def add_parser(subparsers, name: str) -> None:
    from ..cli import add_include_option, add_machine_options
    p = subparsers.add_parser(name, help="serve a guest run to GDB (remote protocol)")
    p.add_argument("program", help="a .s file, or the name of a bundled guest program")
    add_include_option(p)
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="TCP port to listen on; 0 picks a free one (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--snapshot-mib", type=_mib, default=256,
                   help="memory for the snapshots of reverse execution (default: %(default)s)")
    add_machine_options(p)


def main(args) -> int:
    from ..cli import EXIT_BUDGET, EXIT_CRASH, config_from, load
    from ..timetravel import SnapshotStore
    from ..ui.session import Session
    from .server import Server
    from .target import Target
    config = config_from(args)
    image = load(args.program, include=args.include)
    session = Session(image, config, store=SnapshotStore(args.snapshot_mib << 20))

    def log(line: str) -> None:
        print(f"emu gdb: {line}", file=sys.stderr, flush=True)

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
    server = Server(Target(session), args.host, args.port, log=log, out=out)
    try:
        port = server.listen()
    except OSError as e:
        import os
        # getaddrinfo's errors (a host that does not resolve) have negative
        # numbers that os.strerror does not know: their own text says it.
        why = os.strerror(e.errno) if e.errno and e.errno > 0 else \
            (e.strerror or str(e)).split(" (while ")[0]
        raise EmuError(f"cannot listen on {args.host}:{args.port}: {why}") from None
    name = image.source_name.rsplit("/", 1)[-1]
    print(f"emu gdb: {name} ({config.mode}) waiting for GDB on {args.host}:{port} "
          f"(gdb: target remote :{port})", flush=True)
    how = server.serve()
    if how == "kill":
        log("killed by the debugger")
        return 0
    s = session.system
    if how == "over":
        log(f"the guest's run ended ({s.outcome}, {s.message}) and the client left")
    else:
        session.delete_breakpoint(None) if session.breakpoints else None
        session.watch.watches.clear()
        session.cont()                  # detached: the guest runs on to its end
        server.console()
        log(f"detached; the guest ran on: {s.outcome}, {s.message}")
    if s.outcome == "poweroff":
        return (s.exit_status or 0) & 0xFF
    return EXIT_CRASH if s.outcome == "crash" else EXIT_BUDGET
