"""The command line: a thin layer over the Python API.

    emu                      the default demo
    emu run PROG.s [...]     run a guest; its console streams live, a summary ends it
    emu compare PROG.s       the guest natively, under each shadow policy, nested
    emu asm PROG.s [-o F]    assemble: a listing, or the raw bytes to a file
    emu disasm PROG.s|F.bin  disassemble
    emu step PROG.s [...]    step through a run: instructions, faults, the six steps

Exit status: a guest that powers off gives its own status (0..255); a guest
that crashes (triple fault, bus error, hlt forever) gives 3, one that
exhausts its cycle budget 4, a run stopped with Ctrl-C 130; bad input (a
missing file, an assembly error) gives 1 and bad usage 2, each with one
clear line on standard error.  ``emu run`` and ``emu compare`` live in
``commands.py``, ``emu asm`` and ``emu disasm`` in ``asm/command.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__, programs
from .asm import assemble_file
from .asm.lexer import clip
from .errors import AsmError, ConfigError, EmuError, one_line
from .hw.tlb import POLICIES
from .outputs import check_folder, check_output, write_json_atomic
from .system import CLOCKS, MODES, SHADOW_POLICIES, TLB_KINDS, Config

EXIT_CRASH, EXIT_BUDGET, EXIT_INPUT, EXIT_USAGE = 3, 4, 1, 2
EXIT_INTERNAL = 70          # a bug in emu (EX_SOFTWARE)
DEMO_PROGRAM = "demand"


class UsageError(EmuError):
    pass


NARRATE = "--narrate"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line.

    ``--narrate`` takes its optional value only after ``=`` (``--narrate``,
    ``--narrate=brief``): a bare ``--narrate`` is read as ``--narrate=full``
    before parsing, so the word after it is never taken for its value."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        if extras:      # (found by this parser, left by a subcommand's: name the latter)
            command = getattr(ns, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            raise UsageError(f"unrecognized arguments: {' '.join(extras)} "
                             f"(see '{prog} --help')")
        return ns

    def parse_known_args(self, args=None, namespace=None):
        if args is not None:
            args = list(args)
            end = args.index("--") if "--" in args else len(args)
            for i, a in enumerate(args[:end - 1]):
                if a == NARRATE and args[i + 1] in ("full", "brief"):
                    raise UsageError(f"write {NARRATE}={args[i + 1]}: {NARRATE} takes its "
                                     "value after '=' (a word after it is a program)")
            args = [f"{NARRATE}=full" if i < end and a == NARRATE else a
                    for i, a in enumerate(args)]
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        return super().format_help().replace(f"{NARRATE} =brief ", f"{NARRATE}[=brief]") \
            .replace(f"{NARRATE} =brief", f"{NARRATE}[=brief]")

    def format_usage(self) -> str:
        return super().format_usage().replace(f"{NARRATE} =brief", f"{NARRATE}[=brief]")


def _integer(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{clip(text)}' is not a number") from None


def _positive(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{clip(text)}' is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"'{clip(text)}' must be positive")
    return value


def add_include_option(p: argparse.ArgumentParser) -> None:
    """``-I DIR``: where ``%include`` and ``incbin`` look, after the
    program's own directory (as NASM's ``-I``)."""
    p.add_argument("-I", "--include", metavar="DIR", action="append", default=[],
                   help="look for %%include and incbin files in DIR too, after the "
                        "program's directory (repeatable; the bundled include directory "
                        "comes last)")


def add_machine_options(p: argparse.ArgumentParser, every: bool = False) -> None:
    """The options of a machine.  ``every``: no mode or shadow policy by
    default (``emu compare`` runs every one)."""
    p.add_argument("--mode", choices=MODES, default=None if every else Config.mode,
                   help="how memory is virtualized (default: " +
                        ("every mode)" if every else "%(default)s)"))
    p.add_argument("--mem-mib", type=_positive, default=Config.mem_mib,
                   help="guest RAM in MiB (default: %(default)s)")
    p.add_argument("--machine-mib", type=_positive, default=None,
                   help="machine memory under a VMM in MiB (default: RAM + 25%%, at least "
                        "4 MiB more)")
    p.add_argument("--shadow-policy", choices=SHADOW_POLICIES,
                   default=None if every else Config.shadow_policy,
                   help="shadow coherence (trace|oos) and CR3 (cache|drop) policy "
                        "(default: " + ("every policy)" if every else "%(default)s)"))
    p.add_argument("--check-invariants", action="store_true",
                   help="check resource control after every VM exit")
    p.add_argument("--max-cycles", type=_positive, default=Config.max_cycles,
                   help="cycle budget; the run stops there (default: %(default)s)")
    p.add_argument("--clock", choices=CLOCKS, default=Config.clock,
                   help="what the timer counts (default: %(default)s)")
    p.add_argument("--tlb-entries", type=_positive, default=Config.tlb_entries,
                   help="entries per TLB (default: %(default)s)")
    p.add_argument("--tlb-ways", type=_positive, default=Config.tlb_ways,
                   help="TLB associativity (default: %(default)s)")
    p.add_argument("--tlb-policy", choices=POLICIES, default=Config.tlb_policy,
                   help="TLB replacement policy (default: %(default)s)")
    p.add_argument("--tlb-kind", choices=TLB_KINDS, default=Config.tlb_kind,
                   help="split ITLB/DTLB or one unified TLB (default: %(default)s)")
    p.add_argument("--tlb-large", type=_positive, default=Config.tlb_large,
                   help="TLB entries for 4 MiB pages (default: %(default)s)")
    p.add_argument("--ntlb-entries", type=_integer, default=Config.ntlb_entries,
                   help="nested-translation cache entries, nested mode (default: %(default)s)")
    p.add_argument("--share-interval", type=_integer, default=None,
                   help="cycles between page-sharing scans, 0 for none (default: none "
                        "for one VM, 200000 for several)")
    p.add_argument("--swap-latency", type=_integer, default=Config.swap_latency,
                   help="cycles per swap-disk transfer (default: %(default)s)")
    p.add_argument("--seed", type=_integer, default=Config.seed,
                   help="seed of the random TLB policy (default: %(default)s)")
    p.add_argument("--vmm", metavar="FILE", default=None,
                   help="shadow mode with your VMM: a Python file with one ShadowVmm "
                        "subclass (emu lab)")


def config_from(args) -> Config:
    return Config(mode=args.mode, mem_mib=args.mem_mib, max_cycles=args.max_cycles,
                  clock=args.clock, tlb_entries=args.tlb_entries,
                  tlb_ways=args.tlb_ways, tlb_policy=args.tlb_policy,
                  tlb_kind=args.tlb_kind, tlb_large=args.tlb_large, seed=args.seed,
                  ntlb_entries=args.ntlb_entries,
                  share_interval=args.share_interval or 0, swap_latency=args.swap_latency,
                  machine_mib=args.machine_mib, shadow_policy=args.shadow_policy,
                  check_invariants=args.check_invariants,
                  vmm=_vmm_file(args)).validate()


def _vmm_file(args) -> str | None:
    vmm = getattr(args, "vmm", None)
    if vmm is None:
        return None
    if args.mode != "shadow" and getattr(args, "command", None) != "compare":
        raise UsageError(f"--vmm is a shadow-paging VMM: it runs with --mode shadow, "
                         f"not --mode {args.mode}")
    from .lab.loader import load_vmm
    load_vmm(vmm)              # a bad file is one line before anything runs
    return vmm


OPTIONED = ("run", "compare", "step", "gdb")   # the commands that read emu-options lines


def with_program_options(argv: list[str], args):
    """``args`` with the program's ``; emu-options:`` lines read first (the
    command line's own options win), for the commands that run a program."""
    if args.command not in OPTIONED:
        return args
    extra = programs.default_options(programs.resolve(args.program))
    return build_parser().parse_args([argv[0], *extra, *argv[1:]]) if extra else args


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="emu", description="A teaching emulator of memory virtualization.")
    p.add_argument("--version", action="version", version=f"emu {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    r = sub.add_parser("run", help="run a guest program")
    r.add_argument("program", help="a .s file, or the name of a bundled guest program")
    r.add_argument("more", nargs="*", metavar="PROGRAM",
                   help="more programs: run them all together, one VM each, on one "
                        "machine (--machine-mib sets its memory)")
    add_include_option(r)
    add_machine_options(r)
    r.add_argument("--stats-json", metavar="FILE",
                   help="write the result and counters as JSON ('-': standard output)")
    r.add_argument("--quiet", action="store_true", help="no summary table")
    r.add_argument(NARRATE, choices=("full", "brief"), metavar="=brief",
                   help="tell each fault as the six steps of a virtualized translation "
                        "(--narrate=brief: the first of each kind in full, the rest in one "
                        "line)")
    r.add_argument("--trace", metavar="FILE.jsonl",
                   help="write every trace event as JSON lines ('-': standard output)")
    r.add_argument("--stories", metavar="FILE.jsonl",
                   help="write each fault story (its six steps) as JSON lines")
    r.add_argument("--timeline", metavar="FILE.json",
                   help="write the run as Chrome trace-event JSON (Perfetto, chrome://tracing)")
    a = sub.add_parser("asm", help="assemble a program")
    a.add_argument("program")
    add_include_option(a)
    a.add_argument("-o", "--output", metavar="FILE",
                   help="write the bytes of the image (from its lowest address) to FILE")
    a.add_argument("--elf", metavar="OUT",
                   help="write an ELF32 i386 file with the labels and source lines, for gdb")
    d = sub.add_parser("disasm", help="disassemble a program")
    d.add_argument("program", help="a .s file, or a raw binary with --org")
    add_include_option(d)
    d.add_argument("--org", type=_address, default=None,
                   help="load address of a raw binary (up to 1 MiB of it)")
    c = sub.add_parser("compare", help="run a guest natively, under shadow paging (each "
                       "policy) and nested paging, and compare",
                       description="Native is the reference; --mode keeps one mode beside "
                                   "it, --shadow-policy one shadow policy.")
    c.add_argument("program")
    add_include_option(c)
    add_machine_options(c, every=True)      # none given: every configuration
    c.add_argument("--width", type=_positive, default=None,
                   help="columns of the table and chart (default: the terminal's, or 80)")
    c.add_argument("--split-io", action="store_true",
                   help="show the console's I/O exits apart from the paging exits")
    c.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    c.add_argument("--svg", metavar="FILE", help="save the table and chart as SVG")
    c.add_argument("--html", metavar="FILE", help="save the table and chart as HTML")
    st = sub.add_parser("step", help="step through a guest run, one fault step at a time")
    st.add_argument("program")
    add_include_option(st)
    add_machine_options(st)
    st.add_argument("--script", metavar="FILE",
                    help="run the commands in FILE (one a line) without a terminal, then exit")
    st.add_argument("--width", type=_positive, default=None,
                    help="console width when not on a terminal (default: 100)")
    st.add_argument("--svg", metavar="FILE", help="save what the console showed as SVG")
    st.add_argument("--html", metavar="FILE", help="save what the console showed as HTML")
    st.add_argument("--svg-each", metavar="DIR",
                    help="save each screen as its own SVG in DIR (screen-001.svg ...)")
    from .gdb.command import _mib
    st.add_argument("--snapshot-mib", type=_mib, default=256,
                    help="memory for the snapshots of back and reverse-* (default: %(default)s)")
    sub.add_parser("list", help="list the bundled guest programs")
    for name, module in PLUGINS.items():
        _plugin(module).add_parser(sub, name)
    return p


# Subcommands that live in their own modules: each has
# ``add_parser(subparsers, name)`` and ``main(args) -> int``.  Imported only
# when the command line is parsed, so ``emu run`` pays nothing for them.
PLUGINS: dict[str, str] = {
    "sweep": "emu.sweep.cli",
    "quiz": "emu.quiz.command",
    "isa": "emu.isadoc",
    "gdb": "emu.gdb.command",
    "lab": "emu.lab.command",
}


def _plugin(module: str):
    import importlib
    return importlib.import_module(module)


def main(argv: list[str] | None = None, watch: bool = False) -> int:
    """The program; ``watch`` (the console script): a student's VMM runs
    under a watcher process that stops it where it cannot stop itself
    (``vmm/handler_time.py``)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv:
            return _demo()
        args = build_parser().parse_args(argv)
        if args.command is None:
            return _demo()
        args = with_program_options(argv, args)
        if watch and _runs_student_code(args):
            from .vmm import handler_time
            handler_time.supervise()
        if args.command in PLUGINS:
            return _plugin(PLUGINS[args.command]).main(args)
        if args.command in ("run", "compare"):
            from . import commands
            return {"run": commands.cmd_run, "compare": commands.cmd_compare}[
                args.command](args)
        if args.command in ("asm", "disasm"):
            from .asm import command
            return {"asm": command.cmd_asm, "disasm": command.cmd_disasm}[args.command](args)
        return {"step": cmd_step, "list": cmd_list}[args.command](args)
    except AsmError as e:
        print(f"emu: {one_line(str(e))}", file=sys.stderr)
        if e.excerpt() and e.text.replace("\t", " ").isprintable():
            print(e.excerpt(), file=sys.stderr)   # (not the "line" of a binary file)
        return EXIT_INPUT
    except (UsageError, ConfigError) as e:
        print(f"emu: error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except EmuError as e:
        print(f"emu: error: {one_line(str(e))}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("emu: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:   # sys.exit() in a --vmm file (argparse's own go on)
        from .lab.loader import student_message
        student = student_message(e)
        if student is None:
            raise
        print(f"emu: error: {student}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:
        return 0
    except OSError as e:     # a file that fails part way (a full disk ...)
        what = f" {e.filename}" if e.filename else ""
        print(one_line(f"emu: error: cannot read or write{what}: {e.strerror or e}"),
              file=sys.stderr)
        return EXIT_INPUT
    except Exception as e:   # a bug: still one line, unless asked for more
        if os.environ.get("EMU_DEBUG"):
            raise
        from .lab.loader import student_message
        student = student_message(e)
        if student is not None:           # the bug is in a --vmm file, not in emu
            print(f"emu: error: {student}", file=sys.stderr)
            return EXIT_INPUT
        print(f"emu: internal error: {type(e).__name__}: {e} "
              "(set EMU_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_INTERNAL


def _demo() -> int:
    """The default demo: a guest kernel under shadow paging, narrated."""
    print(f"emu demo: the '{DEMO_PROGRAM}' guest kernel under shadow paging, narrated\n"
          f"(the first fault of each kind in full; 'emu run {DEMO_PROGRAM} --narrate' tells "
          "them all)\n")
    return main(["run", DEMO_PROGRAM, "--mode", "shadow", "--narrate=brief"])


def load(program: str, listing: bool = False, include: list[str] | tuple = ()):
    """Assemble a program: a path, or the name of a bundled one; ``include``:
    directories ``%include`` and ``incbin`` look in (``-I``), before the
    bundled one.  What the assembly says and goes on after (``%warning``)
    goes to stderr."""
    for folder in include:
        if not os.path.isdir(folder):
            raise EmuError(f"-I {folder}: no such directory")
    image = assemble_file(programs.resolve(program),
                          include_dirs=[*include, programs.include_dir()], listing=listing)
    for warning in image.warnings:
        print(f"emu: {warning}", file=sys.stderr)
    return image


def bounded(text: str, lo: int, hi: int, bad: str, outside: str) -> int:
    """An integer option from ``lo`` to ``hi``, in any base Python reads;
    ``bad`` and ``outside`` say what is wrong (``{text}``, ``{value}``)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(bad.format(text=clip(text))) from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(outside.format(text=clip(text), value=value))
    return value


def _address(text: str) -> int:
    """An address on the command line: 0 to 0xFFFFFFFF."""
    return bounded(text, 0, 0xFFFFFFFF, "not an address: '{text}'",
                   "{text} is outside the 32-bit address space")


def cmd_step(args) -> int:
    from .ui.stepper import read_script, run
    if args.script is not None:
        read_script(args.script)        # a missing script: one line, before any work
    if args.width is not None and args.width < 60:
        raise UsageError(f"--width must be at least 60 columns (the code beside the "
                         f"registers), not {args.width}")
    if sum(p == "-" for p in (args.svg, args.html)) > 1:
        raise UsageError("only one output can be '-' (standard output)")
    for path in (args.svg, args.html):
        check_output(path)
    if args.svg_each is not None:
        check_folder(args.svg_each)
    return run(load(args.program, include=args.include), config_from(args),
               script=args.script, svg=args.svg, html=args.html, width=args.width,
               svg_each=args.svg_each, snapshot_mib=args.snapshot_mib)


def cmd_list(args) -> int:
    lab = programs.lab_catalogue()
    for name, title in programs.catalogue() + ([("", ""), ("", "the lab's guests (emu lab):")]
                                               if lab else []) + lab:
        # A title starts with the program's name ("hello: the smallest ..."):
        # the column already says it.
        if title.startswith(f"{name}:"):
            title = title[len(name) + 1:].strip()
        print(f"{name:20s} {title}".rstrip() if name else title)
    return 0


def _runs_student_code(args) -> bool:
    """Does the command run a student's VMM file in this process?"""
    if args.command in OPTIONED and getattr(args, "vmm", None) not in (None, "builtin"):
        return True             # (a sweep's --vmm is an axis: its runs are cells)
    return (args.command == "lab" and getattr(args, "lab_command", None) == "check"
            and not args.many and args.file not in (None, "builtin"))


def entry() -> None:
    """The console script."""
    _lenient(sys.stdout)
    try:
        code = main(watch=True)
        sys.stdout.flush()
    except BrokenPipeError:
        code = 0
    sys.exit(code)


def _lenient(stream) -> None:
    """A character the output's encoding lacks (a terminal in Latin-1, an
    ASCII locale) is written as '?', not a crash at the first dash.
    (stderr does so already, as Python sets it up: backslashes.)"""
    try:
        if stream.errors == "strict":
            stream.reconfigure(errors="replace")
    except (AttributeError, ValueError):    # (not a text file of io's: left as it is)
        pass


if __name__ == "__main__":
    entry()


__all__ = ["main", "ConfigError", "write_json_atomic"]
