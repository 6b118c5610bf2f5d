"""Printing a quiz: plain text (a terminal), Markdown (a handout) and JSON
(an autograder: the schema ``--check`` reads, in docs/quiz.md).

Every renderer is a pure function of the worked problems, so the same
seed gives byte-identical output: integers only, no floats, keys in a
fixed order.
"""

from __future__ import annotations

from . import KINDS, QUIZ_VERSION, kind_module, work

FORMAT = "emu-quiz"


def header(kind: str, seed: int, difficulty: int, count: int) -> str:
    what = "every kind in turn" if kind == "all" else kind
    return (f"emu quiz · {what} · seed {seed} · difficulty {difficulty} · "
            f"{count} problem{'s' if count != 1 else ''} · quiz version {QUIZ_VERSION}")


def text(kind: str, seed: int, difficulty: int, plist, solve: bool) -> str:
    out = [header(kind, seed, difficulty, len(plist)), ""]
    for p in plist:
        w = work(p)
        out.append(f"Problem {p.number} · {p.kind}")
        out += _wrap(w.intro)
        out.append("")
        for sec in w.state:
            out.append(sec.title + (":" if sec.lines else ""))
            out += ["  " + ln for ln in sec.lines]
            if sec.lines:
                out.append("")
        if out[-1]:
            out.append("")
        out.append("Questions:")
        out += [f"  {i}. {q}" for i, q in enumerate(w.questions, 1)]
        if solve:
            out.append("Answers:")
            for i, (s, why) in enumerate(zip(w.solution, w.why), 1):
                out.append(f"  {i}. {s}")
                out.append(f"     why: {why}")
        out.append(f"(watch it: emu quiz --kind {kind} --seed {seed} --difficulty {difficulty} "
                   f"--open {p.number})")
        out.append("")
    return "\n".join(out)


def markdown(kind: str, seed: int, difficulty: int, plist, solve: bool) -> str:
    what = "every kind in turn" if kind == "all" else f"`{kind}`"
    out = [f"# emu quiz: {what}, seed {seed}, difficulty {difficulty}", "",
           f"Quiz version {QUIZ_VERSION}. Each problem is a small machine state; "
           "`emu quiz --kind K --seed S --difficulty D --open N` runs problem N in the "
           "stepper, stopped where its answer happens.", ""]
    for p in plist:
        w = work(p)
        out += [f"## Problem {p.number}: {p.kind}", "", _md(w.intro), ""]
        for sec in w.state:
            title = _md(sec.title[0].upper() + sec.title[1:])
            out.append(f"**{title}**" if not sec.lines else f"{title}:")
            out.append("")
            if sec.lines:
                out += ["```text", *sec.lines, "```", ""]
        out.append("Questions:")
        out.append("")
        out += [f"{i}. {_md(q)}" for i, q in enumerate(w.questions, 1)]
        out.append("")
    if solve:
        out += ["## Answers", ""]
        for p in plist:
            w = work(p)
            out += [f"### Problem {p.number}: {p.kind}", ""]
            for i, (s, why) in enumerate(zip(w.solution, w.why), 1):
                out.append(f"{i}. {_md(s)}. Why: {_md(why)}")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def as_json(kind: str, seed: int, difficulty: int, plist, solve: bool) -> dict:
    """The quiz as one JSON object: every problem's state and questions,
    and its ``answer`` (null unless ``solve``: the student fills it in)."""
    out = {"format": FORMAT, "version": QUIZ_VERSION, "kind": kind, "seed": seed,
           "difficulty": difficulty, "count": len(plist), "problems": []}
    for p in plist:
        w = work(p)
        out["problems"].append({
            "number": p.number, "kind": p.kind, "intro": w.intro,
            "state": w.state_json, "questions": list(w.questions),
            "answer": w.answer if solve else None})
    return out


def _wrap(paragraph: str, width: int = 92) -> list[str]:
    lines, line = [], ""
    for word in paragraph.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def _md(text: str) -> str:
    """Text for Markdown: the characters Markdown would read as markup
    (emphasis, an HTML tag such as ``vmm_<step>``, a code span) escaped (an
    underscore inside a word is no markup), and hex numbers in code spans,
    so a handout keeps them on one line."""
    import re
    text = re.sub(r"([\\`*<]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))", r"\\\1", text)
    return re.sub(r"\b(0x[0-9a-f]+)\b", r"`\1`", text)


__all__ = ["FORMAT", "KINDS", "as_json", "header", "kind_module", "markdown", "text"]
