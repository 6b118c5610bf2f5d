"""The public Python API: docs/api.md's examples run and print what it says,
the event kinds are exactly those runs emit, bundled programs assemble
without options, and every reference to a file or module resolves.

``EMU_REGEN=1 pytest tests/test_api.py`` records the outputs in
docs/api.md again (read the diff before committing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pathlib
import re
import subprocess

import emu
from emu import EVENT_KINDS, Config, System, assemble, assemble_file, find_program
from emu.multi import build
from emu.programs import include_dir

ROOT = pathlib.Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
REGEN = bool(os.environ.get("EMU_REGEN"))
EXAMPLE = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.S)


def test_every_python_block_of_the_api_doc_has_its_output():
    text = API.read_text()
    assert text.count("```python") == len(EXAMPLE.findall(text)) >= 8


def test_the_api_doc_examples_print_what_it_says():
    text = API.read_text()
    namespace: dict = {}
    shown = []
    for m in EXAMPLE.finditer(text):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(m[1], str(API), "exec"), namespace)
        shown.append((m, out.getvalue()))
    if REGEN:
        for m, got in reversed(shown):
            text = text[:m.start(2)] + got + text[m.end(2):]
        API.write_text(text)
    for m, got in shown:
        assert got == m[2], f"docs/api.md example:\n{m[1]}"


def test_the_api_doc_documents_each_public_name():
    text = API.read_text()
    for name in ("System", "Config", "Result", "Event", "TraceBus", "EVENT_KINDS",
                 "assemble_file", "find_program", "compare", "configurations", "Comparison",
                 "build_stories", "StoryBuilder", "FaultStory", "run"):
        assert f"`{name}" in text, name
        assert name in emu.__all__


# --- bundled programs -----------------------------------------------------------------
def test_a_bundled_program_assembles_with_no_include_directory():
    image = assemble_file(find_program("demand"))
    assert image.symbols["_start"] == image.entry == 0x1000
    again = assemble_file(find_program("demand"), include_dirs=[ROOT / "guest_programs"
                                                                / "include"])
    assert again.segments == image.segments


# --- event kinds ----------------------------------------------------------------------
WP0 = """
org 0x1000
_start:
    mov esp, 0x80000
    mov dword [0x100000], 0x101003
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov [0x101000 + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [0x101000 + 0x200*4], 0x200001
    mov eax, 0x100000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
    mov dword [0x200000], 0x5EED
    mov eax, 0
    out 0xF4, eax
"""

SWAP = """
org 0x1000
_start:
    mov ebx, 0
.round:
    mov ecx, 0
.w:
    mov edx, ecx
    shl edx, 12
    mov [0x400FFC + edx], ebx
    inc ecx
    cmp ecx, 160
    jne .w
    inc ebx
    cmp ebx, 2
    jne .round
    mov eax, 0
    out 0xF4, eax
"""


def kinds_of(image, **config) -> set[str]:
    system = System(image, Config(**config))
    seen: set[str] = set()
    system.bus.subscribe(lambda ev: seen.add(ev.kind))
    system.run()
    return seen


def test_event_kinds_are_exactly_those_the_runs_emit():
    demand = assemble_file(find_program("demand"))
    seen = set()
    for mode, policy in (("native", "trace-cache"), ("shadow", "trace-cache"),
                         ("shadow", "oos-drop"), ("nested", "trace-cache")):
        seen |= kinds_of(demand, mode=mode, shadow_policy=policy)
    seen |= kinds_of(assemble_file(find_program("syscalls")))        # timer ticks
    seen |= kinds_of(assemble(WP0, "wp0.s"))                         # CR0.WP=0
    seen |= kinds_of(assemble_file(pathlib.Path(__file__).parent / "programs" / "many_spaces.s",
                                   include_dirs=[include_dir()]),
                     mode="shadow", machine_mib=1)                     # tables freed
    swap, hello = assemble(SWAP, "swap.s"), assemble_file(find_program("hello"))
    for images, config in (([swap, swap], Config(machine_mib=1, swap_latency=100)),
                           ([hello, hello], Config(share_interval=2000))):
        host, systems = build(images, ["a", "b"], config)
        for s in systems:
            s.bus.subscribe(lambda ev: seen.add(ev.kind))
        host.start()
        host.env.run(until=host.env.all_of([s.start() for s in systems]))
    assert seen == set(EVENT_KINDS)
    for kind, meaning in EVENT_KINDS.items():
        assert meaning and meaning[0].islower(), kind


# --- references -----------------------------------------------------------------------
PATH = re.compile(r"(?<![\w/.-])((?:docs|tests|emu|guest_programs|examples|benchmarks|scripts)"
                  r"/[\w./*{}<>-]*[\w*}>])")
MODULE = re.compile(r"python3? -m (emu(?:\.\w+)*)")
LINK = re.compile(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)")


def project_text_files() -> list[pathlib.Path]:
    done = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return [ROOT / p for p in done.stdout.split()
            if p.endswith((".py", ".md", ".s", ".inc", ".toml", ".ipynb"))
            and (ROOT / p).is_file()]


def test_every_file_and_module_a_doc_or_docstring_names_exists():
    missing = []
    for path in project_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT)
        for m in PATH.finditer(text):
            ref = m[1].rstrip(".")
            if ref.startswith("emu/guest_programs"):       # the installed name
                ref = ref[len("emu/"):]
            pattern = re.sub(r"\{[^}]*\}|<[^>]*>", "*", ref)     # NAME placeholders
            if not any(ROOT.glob(pattern)) and not any(ROOT.glob(pattern + ".*")):
                missing.append(f"{rel}: {ref}")
        for m in MODULE.finditer(text):
            if importlib.util.find_spec(m[1]) is None:
                missing.append(f"{rel}: python -m {m[1]}")
        if re.search(r"\bDESIGN\.md\b|\bDESIGN document", text):
            missing.append(f"{rel}: a DESIGN file (the design notes are docs/design.md)")
        if path.suffix == ".md":
            for m in LINK.finditer(text):
                if not (path.parent / m[1]).exists():
                    missing.append(f"{rel}: link {m[1]}")
    assert missing == []
