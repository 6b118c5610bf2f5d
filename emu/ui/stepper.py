"""The stepper: an interactive console that steps through a guest run, down
to one of the six steps of a fault at a time.

    emu step PROG.s [--mode ...] [--script FILE] [--svg F] [--html F] [--svg-each DIR]

A ``cmd.Cmd`` loop (``do_X``/``help_X`` pairs, short aliases) over a
``Session`` (``session.py``: the run, its breakpoints and its undo).  After
every motion the screen (``screen.py``) is redrawn at the size of the
terminal; the views (``views.py``) print below it.  With ``--script FILE``,
or commands on a standard input that is not a terminal, the same commands
run without a terminal: each is echoed after the prompt, the output has a
fixed width and no colour, so lecture notes and tests can replay a session.
An error in a command prints one line and the session goes on.  ``export
FILE`` saves the screen on show as SVG, HTML or text by the file's suffix
(.svg, .html, .txt; another is refused), and ``--svg-each DIR`` saves every
screen drawn, one file each: a slide a screen.
"""

from __future__ import annotations

import cmd
import io
import os
import re
import signal
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import EmuError
from . import views
from .commands import ALIASES, HELP, MAX_SCRIPT, MOTIONS, address_value, read_script, script_lines  # noqa: F401  (emu step, emu quiz)
from .screen import screen
from .session import Session

_COMMENT = re.compile(r"(^|\s)#.*$")   # a comment after a command (or alone)
WIDTH, HEIGHT = 100, 40        # the console when it is not a terminal
PROMPT = "(emu) "


class Stepper(cmd.Cmd):
    """The console over one ``Session``; ``console`` is a rich Console."""

    prompt = PROMPT

    def __init__(self, session: Session, console: Console, *, interactive: bool = False,
                 height: int | None = None):
        super().__init__(stdout=console.file)
        self.session = session
        self.console = console
        self.interactive = interactive
        self.fixed_height = height
        self.message = "at the start of the run ('help' lists the commands)"
        self.shown = None               # the screen drawn last (``export``)
        self.each_dir: str | None = None   # --svg-each: every screen drawn, as SVG
        self.drawn = 0

    # --- output -------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.fixed_height or self.console.size.height

    def draw(self) -> None:
        if self.interactive:
            self.console.clear()
        self.shown = screen(self.session, self.console.width, self.height, self.message)
        self.console.print(self.shown)
        self.drawn += 1
        if self.each_dir is not None:
            self.save(os.path.join(self.each_dir, f"screen-{self.drawn:03d}.svg"))

    def save(self, path: str) -> None:
        """The screen on show as SVG, HTML or text (by ``path``'s suffix)."""
        from ..outputs import check_output, write_text
        check_output(path)
        recorder = Console(record=True, width=self.console.width, file=io.StringIO(),
                           force_terminal=True, color_system="truecolor", highlight=False)
        recorder.print(self.shown)
        suffix = os.path.splitext(path)[1].lower()
        name = self.session.image.source_name.rsplit("/", 1)[-1]
        if suffix in (".html", ".htm"):
            text = recorder.export_html()
        elif suffix == ".txt":
            text = recorder.export_text()
        else:
            text = recorder.export_svg(title=f"emu step {name}")
        write_text(path, text)

    def error(self, text: str) -> None:
        self.console.print(Text(f"error: {text}", style="bold red"))

    # --- the loop -------------------------------------------------------------------
    def parseline(self, line):
        word, _, rest = line.strip().partition(" ")
        if "-" in word and word in HELP:          # reverse-step ...: do_reverse_step
            line = f"{word.replace('-', '_')} {rest}"
        command, arg, line = super().parseline(line)
        if command in ALIASES:
            command = ALIASES[command].replace("-", "_")
            line = f"{command} {arg}".strip()
        return command, arg, line

    def onecmd(self, line: str) -> bool:
        line = _COMMENT.sub("", line)       # "break page_fault   # why": as in a script
        try:
            return super().onecmd(line)
        except (EmuError, ValueError) as e:
            self.error(str(e))
        except Exception as e:          # a --vmm file's error, or a bug: one line, and on
            if os.environ.get("EMU_DEBUG"):
                raise
            from ..lab.loader import student_message
            student = student_message(e)
            self.error(student if student is not None else
                       f"internal error: {type(e).__name__}: {e} (EMU_DEBUG=1 for details)")
        return False

    def default(self, line: str) -> bool:
        self.error(f"unknown command '{line.split()[0]}' ('help' lists the commands)")
        return False

    def emptyline(self) -> bool:
        if self.interactive and self.lastcmd:
            return self.onecmd(self.lastcmd)
        return False

    def run_lines(self, lines) -> None:
        """Run commands non-interactively, each echoed after the prompt."""
        self.draw()
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            self.console.print(Text(PROMPT + line, style="bold"))
            if self.onecmd(line):
                break

    def interact(self) -> None:
        self.draw()
        while True:
            try:
                self.cmdloop(intro="")
                return
            except KeyboardInterrupt:
                self.console.print("^C (leave with 'quit')")

    def _motion(self, fn) -> bool:
        previous = signal.getsignal(signal.SIGINT) if self.interactive else None
        if self.interactive:
            def interrupt(signum, frame):
                self.session.interrupted = True
            signal.signal(signal.SIGINT, interrupt)
        try:
            self.message = fn()
        finally:
            if self.interactive:
                signal.signal(signal.SIGINT, signal.default_int_handler if previous is None
                              else previous)   # (None: not set from Python)
        self.draw()
        return False

    # --- arguments ------------------------------------------------------------------
    def count(self, arg: str, default: int = 1) -> int:
        arg = arg.strip()
        if not arg:
            return default
        try:
            n = int(arg, 0)
        except ValueError:
            raise EmuError(f"'{arg}' is not a number") from None
        if n < 1:
            raise EmuError(f"'{arg}' must be at least 1")
        return n

    def address(self, text: str) -> int:
        """A number, symbol or register, with + and - terms."""
        return address_value(text, self.session.image.symbols, self.session.registers())

    # --- motions --------------------------------------------------------------------
    def do_step(self, arg):
        n = self.count(arg)
        return self._motion(lambda: self.session.step(n))

    def do_next(self, arg):
        return self._motion(self.session.next)

    def do_micro(self, arg):
        return self._motion(self.session.micro)

    def do_continue(self, arg):
        return self._motion(self.session.cont)

    def do_back(self, arg):
        n = self.count(arg)
        return self._motion(lambda: self.session.back(n))

    def do_reverse_step(self, arg):
        return self._motion(self.session.reverse_step)

    def do_reverse_continue(self, arg):
        return self._motion(self.session.reverse_continue)

    def do_reverse_micro(self, arg):
        return self._motion(self.session.reverse_micro)

    def do_last_write(self, arg):
        words = arg.split()
        if len(words) < 2 or words[0] not in ("va", "pa", "ma"):
            raise EmuError("usage: last-write va|pa|ma ADDR")
        # Text: the source line may hold brackets ([esi + 4]) that are not markup.
        self.console.print(Text(self.session.last_write(words[0],
                                                        self.address(" ".join(words[1:])))))

    def do_show(self, arg):
        self.draw()

    def do_export(self, arg):
        path = arg.strip()
        if not path:
            raise EmuError("export takes a file name (FILE.svg, FILE.html or FILE.txt)")
        suffix = os.path.splitext(path)[1].lower()
        if path != "-" and suffix not in (".svg", ".html", ".htm", ".txt"):
            raise EmuError(f"export writes FILE.svg, FILE.html or FILE.txt, not "
                           f"{suffix or 'a name without a suffix'}: {path}")
        self.save(path)
        if path != "-":
            self.console.print(f"saved the screen to {path}")

    # --- breakpoints ----------------------------------------------------------------
    def do_break(self, arg):
        words = arg.split()
        s = self.session
        if not words:
            return self._list_breakpoints()
        what = words[0].lower()
        if what in ("fault", "exit"):
            if len(words) != 2:
                raise EmuError(f"break {what} takes one {'kind' if what == 'fault' else 'reason'}")
            bp = s.add_breakpoint(what, words[1].lower(), words[1])
        elif what == "write":
            if len(words) < 2:
                raise EmuError("break write takes a va")
            text = " ".join(words[1:])
            bp = s.add_breakpoint("write", self.address(text), text)
        else:
            bp = s.add_breakpoint("addr", self.address(arg), arg.strip())
        self.console.print(f"breakpoint {bp.number} {bp.describe()}")

    def _list_breakpoints(self):
        bps = self.session.breakpoints
        if not bps:
            self.console.print("no breakpoints")
            return
        t = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for c in ("#", "breakpoint", "hits"):
            t.add_column(c)
        for bp in bps:
            t.add_row(str(bp.number), bp.describe(), str(bp.hits))
        self.console.print(t)

    def do_delete(self, arg):
        arg = arg.strip()
        if not arg:
            raise EmuError("delete takes a breakpoint number, or 'all'")
        n = self.session.delete_breakpoint(None if arg == "all" else self.count(arg))
        self.console.print(f"deleted {n} breakpoint{'s' if n != 1 else ''}")

    # --- views ----------------------------------------------------------------------
    def do_tlb(self, arg):
        self.console.print(views.tlb_view(self.session))

    def do_pt(self, arg):
        va = self.address(arg) if arg.strip() else None
        self.console.print(views.pt_view(self.session, va))

    def do_spt(self, arg):
        va = self.address(arg) if arg.strip() else None
        self.console.print(views.spt_view(self.session, va))

    def do_pmap(self, arg):
        self.console.print(views.pmap_view(self.session))

    def do_mem(self, arg):
        words = arg.split()
        if len(words) < 2 or words[0] not in ("va", "pa", "ma"):
            raise EmuError("usage: mem va|pa|ma ADDR [N]")
        n = 64
        rest = words[1:]
        if len(rest) > 1 and re.fullmatch(r"\d+|0x[0-9a-fA-F]+", rest[-1]) and \
                not re.search(r"[+-]$", rest[-2]):
            n = self.count(rest.pop())
        self.console.print(views.mem_view(self.session, words[0], self.address(" ".join(rest)),
                                          n))

    def do_stats(self, arg):
        self.console.print(views.stats_view(self.session))

    def do_trace(self, arg):
        self.console.print(views.trace_view(self.session, self.count(arg, 20)))

    # --- the rest -------------------------------------------------------------------
    def do_help(self, arg):
        name = ALIASES.get(arg.strip(), arg.strip())
        if name:
            if name not in HELP:
                raise EmuError(f"no command '{arg.strip()}'")
            return getattr(self, f"help_{name}")()
        t = Table(box=None, pad_edge=False, show_header=False)
        t.add_column(style="bold", no_wrap=True)
        t.add_column(no_wrap=True)
        t.add_column()
        for command, (usage, summary, _) in HELP.items():
            short = ", ".join(sorted(a for a, c in ALIASES.items()
                                     if c == command and len(a) <= 2))
            t.add_row(usage, short, summary)
        self.console.print(t)
        self.console.print(Text("An empty line repeats the last command. 'help COMMAND' "
                                "tells more.", style="italic"))

    def do_quit(self, arg):
        return True

    def do_EOF(self, arg):
        if self.interactive:
            self.console.print()
        return True


def _helper(command: str):
    def help_command(self):
        usage, summary, more = HELP[command]
        self.console.print(Text(usage, style="bold"))
        self.console.print(summary[0].upper() + summary[1:] + ".")
        if more:
            self.console.print(more)
    help_command.__name__ = f"help_{command}"
    return help_command


for _command in HELP:
    setattr(Stepper, f"help_{_command}", _helper(_command))


def run(image, config, *, script: str | None = None, svg: str | None = None,
        html: str | None = None, width: int | None = None, stdin=None, stdout=None,
        svg_each: str | None = None, snapshot_mib: int = 256) -> int:
    """``emu step``: the stepper over ``image``; returns the exit status.
    ``svg``/``html``: the whole session; ``svg_each``: a folder that gets
    each screen drawn as its own SVG; ``-``: standard output;
    ``snapshot_mib``: the budget of the snapshots going back uses."""
    stdin = stdin or sys.stdin
    if stdout is None and "-" in (svg, html):
        stdout = sys.stderr         # standard output takes the export
    stdout = stdout or sys.stdout
    lines = read_script(script) if script is not None else None
    interactive = lines is None and stdin.isatty() and stdout.isatty()
    if lines is None and not interactive:
        try:
            lines = script_lines(stdin, "<stdin>")
        except UnicodeDecodeError:
            raise EmuError("cannot read commands from standard input: not UTF-8 text") from None
    record = bool(svg or html)
    if interactive:
        console = Console(file=stdout, record=record, highlight=False)
    else:
        console = Console(file=stdout, width=width or WIDTH, height=HEIGHT, color_system=None,
                          force_terminal=False, force_interactive=False, record=record,
                          highlight=False, emoji=False)
    from ..timetravel import SnapshotStore
    session = Session(image, config, store=SnapshotStore(snapshot_mib << 20))
    stepper = Stepper(session, console, interactive=interactive,
                      height=None if interactive else HEIGHT)
    if svg_each is not None:
        from ..outputs import make_folder
        make_folder(svg_each)
        stepper.each_dir = svg_each
    if interactive:
        stepper.interact()
    else:
        stepper.run_lines(lines)
    from ..outputs import write_text
    if svg:
        write_text(svg, console.export_svg(
            title=f"emu step {image.source_name.rsplit('/', 1)[-1]}", clear=False))
    if html:
        write_text(html, console.export_html(clear=False))
    return 0
