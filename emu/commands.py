"""``emu run`` and ``emu compare``: a run (or several VMs, or every mode)
with its live views and its exports.

Every output file is checked before the guest starts (``outputs.py``);
``-`` sends one export to standard output, and then the guest's console,
the narration and the summary go to standard error so the export stays
clean.  Ctrl-C stops the run and prints what was measured so far (exit
status 130).
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import replace

from .cli import EXIT_BUDGET, EXIT_CRASH, UsageError, config_from, load
from .outputs import (
    STDOUT,
    check_output,
    close_stream,
    open_stream,
    write_json_atomic,
    write_text,
)

EXIT_INTERRUPTED = 130        # 128 + SIGINT, as shells report it
EXIT_DIFFER = 5               # emu compare: the guest saw different results


class Streamer:
    """Writes the guest console as it comes, line-buffered."""

    def __init__(self, out):
        self.out = out
        self.last = "\n"
        self.before = None      # callable() before any output (erases the progress line)

    def __call__(self, ch: str) -> None:
        if self.before is not None:
            self.before()
        self.out.write(ch)
        self.last = ch
        if ch == "\n":
            self.out.flush()


def _screen(exports: list[str | None]):
    """Where the console, narration and summary go: standard output, or
    standard error when an export takes standard output."""
    to_stdout = [p for p in exports if p == STDOUT]
    if len(to_stdout) > 1:
        raise UsageError("only one output can be '-' (standard output)")
    for path in exports:
        check_output(path)
    return sys.stderr if to_stdout else sys.stdout


class StoryWriter:
    """``--stories``: each fault story as one JSON object a line."""

    def __init__(self, fh, mode: str, vm: str | None = None):
        from .story import StoryBuilder
        self.fh = fh
        self.builder = StoryBuilder(mode)
        self.vm = vm

    def __call__(self, ev) -> None:
        for story in self.builder.feed(ev):
            self._write(story)

    def finish(self) -> None:
        for story in self.builder.finish():
            self._write(story)

    def _write(self, story) -> None:
        import json
        data = story.to_json()
        if self.vm is not None:
            data["vm"] = self.vm
        self.fh.write(json.dumps(data, sort_keys=True) + "\n")


class Interruptible:
    """Ctrl-C stops a run between two batches of guest instructions, never
    in the middle of one (a console byte half written, a VMM step half
    done): SIGINT sets a flag that each system's ``progress`` hook turns
    into ``KeyboardInterrupt`` after its batch.  A second Ctrl-C stops at
    once.  Outside the main thread, or where SIGINT is not Python's, it
    does nothing."""

    def __init__(self, systems):
        self.systems = list(systems)
        self.pending = False
        self.previous = None

    def _signal(self, signum, frame) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def _hook(self, inner):
        def progress(system) -> None:
            if self.pending:
                raise KeyboardInterrupt
            if inner is not None:
                inner(system)
        return progress

    def __enter__(self):
        import signal
        import threading
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self.previous = signal.signal(signal.SIGINT, self._signal)
            for s in self.systems:
                s.progress = self._hook(s.progress)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            import signal
            signal.signal(signal.SIGINT, self.previous)


def _interrupted(result, seconds: float):
    return replace(result, outcome="interrupted", host_seconds=round(seconds, 6),
                   message=f"interrupted (Ctrl-C) after {result.instructions:,} instructions")


def _exit_status(result) -> int:
    if result.outcome == "poweroff":
        return result.exit_status & 0xFF
    if result.outcome == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_CRASH if result.outcome == "crash" else EXIT_BUDGET


def cmd_run(args) -> int:
    if args.more:
        return cmd_run_many(args)
    from .system import System
    config = config_from(args)
    screen = _screen([args.stats_json, args.trace, args.stories, args.timeline])
    image = load(args.program, include=args.include)
    out = Streamer(screen)
    system = System(image, config, console_sink=out)
    if args.narrate:
        from .ui.narrate import Narrator

        def write(text: str) -> None:
            if out.before is not None:
                out.before()
            screen.write(text)
            out.last = "\n"
        system.bus.subscribe(Narrator(write, config.mode, lambda: out.last == "\n",
                                      brief=args.narrate == "brief"))
    streams = []        # (file, path) closed at the end
    if args.trace:
        from .trace import JsonlWriter
        fh = open_stream(args.trace)
        streams.append((fh, args.trace))
        system.bus.subscribe(JsonlWriter(fh))
    stories = None
    if args.stories:
        fh = open_stream(args.stories)
        streams.append((fh, args.stories))
        stories = StoryWriter(fh, config.mode)
        system.bus.subscribe(stories)
    timeline = None
    if args.timeline:
        from .timeline import Timeline
        timeline = Timeline(1, f"{system.name}: {args.program} ({config.mode})", config.costs)
        system.bus.subscribe(timeline)
    progress = None
    if screen.isatty() and sys.stderr.isatty():
        from .ui.progress import ProgressLine
        progress = system.progress = ProgressLine(sys.stderr)
        out.before = progress.clear
    t0 = time.perf_counter()
    try:
        with Interruptible([system]):
            result = system.run()
    except KeyboardInterrupt:
        result = _interrupted(system.result(), time.perf_counter() - t0)
    finally:
        if progress is not None:
            progress.clear()
    if stories is not None:
        stories.finish()
    for fh, path in streams:
        close_stream(fh, path)
    if out.last != "\n":
        screen.write("\n")
    screen.flush()
    if timeline is not None:
        from .timeline import document, dumps
        write_text(args.timeline, dumps(document(
            [timeline], {"program": args.program, "mode": config.mode})))
    if args.stats_json:
        write_json_atomic(args.stats_json, result.to_json())
    if not args.quiet or result.outcome == "interrupted":
        from rich.console import Console

        from .ui.summary import summary
        Console(file=screen).print(summary(result))
    if result.outcome not in ("poweroff", "interrupted"):     # (as for several VMs)
        print(f"emu: {result.outcome}: {result.message}", file=sys.stderr)
    if result.outcome == "interrupted" and not args.quiet:
        print("emu: interrupted", file=sys.stderr)
    return _exit_status(result)


def cmd_run_many(args) -> int:
    """Several programs, one VM each, on one machine."""
    from .multi import DEFAULT_SHARE_INTERVAL, MultiResult, build, vm_names
    programs_ = [args.program, *args.more]
    config = config_from(args)
    changes = {}
    if args.share_interval is None:
        changes["share_interval"] = DEFAULT_SHARE_INTERVAL
    if args.machine_mib is None:
        changes["machine_mib"] = len(programs_) * (config.machine_bytes >> 20)
    config = config.with_(**changes).validate()
    screen = _screen([args.stats_json, args.trace, args.stories, args.timeline])
    images = [load(p, include=args.include) for p in programs_]
    names = vm_names(programs_)

    def write(text: str) -> None:
        screen.write(text)
        screen.flush()
    host, systems = build(images, names, config, write)
    streams = []
    writers = []
    if args.trace:
        from .trace import JsonlWriter
        fh = open_stream(args.trace)
        streams.append((fh, args.trace))
        for s in systems:
            s.bus.subscribe(JsonlWriter(fh, s.name))
    if args.stories:
        fh = open_stream(args.stories)
        streams.append((fh, args.stories))
        for s in systems:
            writers.append(StoryWriter(fh, config.mode, s.name))
            s.bus.subscribe(writers[-1])
    timelines = []
    if args.timeline:
        from .timeline import Timeline
        for pid, (s, program) in enumerate(zip(systems, programs_), 1):
            timelines.append(Timeline(pid, f"{s.name}: {program} ({config.mode})",
                                      config.costs))
            s.bus.subscribe(timelines[-1])
    if args.narrate:
        from .ui.narrate import Narrator
        for s in systems:
            def tell(text: str, name=s.name) -> None:
                write("".join(f"[{name}] {line}\n" for line in text.rstrip("\n").split("\n")))
            s.bus.subscribe(Narrator(tell, config.mode, brief=args.narrate == "brief"))
    t0 = time.perf_counter()
    interrupted = False
    try:
        with Interruptible(systems):
            host.start()
            processes = [s.start() for s in systems]
            host.env.run(until=host.env.all_of(processes))
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - t0
    for s in systems:
        if s.console.sink is not None:
            s.console.sink.flush()
        s.host_seconds = elapsed
    results = [(s.name, s.result()) for s in systems]
    if interrupted:
        results = [(n, r if s.finished else _interrupted(r, elapsed))
                   for (n, r), s in zip(results, systems)]
    multi = MultiResult(results, host.stats(), int(host.env.now), elapsed)
    for w in writers:
        w.finish()
    for fh, path in streams:
        close_stream(fh, path)
    if timelines:
        from .timeline import document, dumps
        write_text(args.timeline, dumps(document(
            timelines, {"programs": programs_, "mode": config.mode})))
    if args.stats_json:
        write_json_atomic(args.stats_json, multi.to_json())
    if not args.quiet or interrupted:
        from rich.console import Console

        from .ui.summary import multi_summary
        Console(file=screen).print(multi_summary(multi, config))
    if interrupted:
        print("emu: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    code = 0
    for name, r in multi.results:
        if r.outcome != "poweroff":
            print(f"emu: {name}: {r.outcome}: {r.message}", file=sys.stderr)
            code = code or (EXIT_CRASH if r.outcome == "crash" else EXIT_BUDGET)
        elif r.exit_status and not code:
            code = r.exit_status & 0xFF
    return code


# --- emu compare ---------------------------------------------------------------------
def compare_configs(args):
    """The configurations ``--mode`` and ``--shadow-policy`` select (native,
    the reference, always)."""
    from .compare import configurations
    if args.mode == "native":
        raise UsageError("--mode native selects nothing to compare: native is the "
                         "reference of every comparison (choose shadow or nested)")
    if args.shadow_policy is not None and args.mode == "nested":
        raise UsageError("--shadow-policy applies to shadow paging, not to --mode nested")
    base = config_from(replace_args(args, mode=args.mode or "shadow",
                                    shadow_policy=args.shadow_policy or "trace-cache"))
    modes = [args.mode] if args.mode else (["shadow"] if args.shadow_policy else None)
    policies = [args.shadow_policy] if args.shadow_policy else None
    return configurations(base, modes, policies)


def replace_args(args, **changes):
    import argparse
    ns = argparse.Namespace(**vars(args))
    for k, v in changes.items():
        setattr(ns, k, v)
    return ns


def cmd_compare(args) -> int:
    from rich.console import Console

    from .compare import Interrupted, compare
    from .ui.compare import render, to_json
    configs = compare_configs(args)
    screen = _screen([args.json, args.svg, args.html])
    if args.width is not None and args.width < 40:
        raise UsageError(f"--width must be at least 40 columns, not {args.width}")
    image = load(args.program, include=args.include)
    progress = _CompareProgress() if sys.stderr.isatty() else None
    width = args.width or (Console(file=screen).width if screen.isatty() else 80)
    try:
        with Interruptible([]) as stop:
            cmp = compare(image, configs, run=_compare_run(progress, stop),
                          progress=progress, program=args.program)
    except Interrupted as cut:
        # What finished is shown; nothing is written (a file of some
        # configurations would pass for the whole comparison).
        Console(file=screen, width=width).print(
            render(cut.comparison, args.program, width=width, split_io=args.split_io))
        n = len(cut.comparison.runs)
        print(f"emu: interrupted: {n} of {cut.total} configuration{'s' if cut.total > 1 else ''}"
              f" ran; no file written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if progress is not None:
            progress.clear()
    view = render(cmp, args.program, width=width, split_io=args.split_io)
    Console(file=screen, width=width).print(view)
    if args.json:
        write_json_atomic(args.json, to_json(cmp))
    if args.svg or args.html:
        recorder = Console(record=True, width=width, file=io.StringIO(), force_terminal=True,
                           color_system="truecolor")
        recorder.print(view)
        if args.svg:
            write_text(args.svg, recorder.export_svg(title=f"emu compare {args.program}",
                                                     clear=False))
        if args.html:
            write_text(args.html, recorder.export_html(clear=False))
    return 0 if not cmp.mismatches else EXIT_DIFFER


def _compare_run(progress, stop: Interruptible):
    """One configuration's run for ``emu compare``: Ctrl-C stops it between
    two batches (``Interruptible``), with its progress line on a terminal."""
    def run(image, config):
        from .system import System
        system = System(image, config)
        line = progress.line if progress is not None else None
        # (Ctrl-C while nothing listens for it: no hook, the batches go on)
        system.progress = stop._hook(line) if stop.previous is not None else line
        if progress is not None and progress.line is not None:
            progress.line.show(system)
        return system.run()
    return run


class _CompareProgress:
    """On a terminal: which configuration runs, and how far it has got."""

    def __init__(self):
        from .ui.progress import ProgressLine
        self.line = None
        self.make = ProgressLine
        self.label = ""

    def __call__(self, i: int, n: int, label: str) -> None:
        self.clear()
        self.label = f"compare: {i + 1} of {n}, {label}"
        self.line = self.make(sys.stderr, delay=0.0, label=self.label)

    def clear(self) -> None:
        if self.line is not None:
            self.line.clear()


__all__ = ["cmd_compare", "cmd_run", "cmd_run_many", "EXIT_INTERRUPTED"]
