"""One error hierarchy for everything the emulator reports to a user.

Architectural events (page faults, #GP ...) are not errors: they are
``hw.exceptions.GuestFault`` values handled inside the CPU.  The classes here
are what reaches the command line, which prints ``str(err)`` on one line.
"""

from dataclasses import dataclass


class EmuError(Exception):
    """Base of every error the emulator reports to its user."""


EXCERPT_WIDTH = 100     # characters of a source line an error message shows


def printable(text: str) -> str:
    """``text`` on one screen line: tabs become a space, control and other
    unprintable characters '?' (one character each, so columns still match)."""
    return "".join(" " if c == "\t" else c if c.isprintable() else "?" for c in text)


def one_line(text: str) -> str:
    """A message on one line: a control character in it (a file name's
    newline) written as Python writes it in a string, ``\\n`` (where no
    column has to match, unlike ``printable``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\t" else repr(c)[1:-1] for c in text)


class AsmError(EmuError):
    """A source file that does not assemble; names file:line:column."""

    def __init__(self, message: str, file: str = "<input>", line: int = 0,
                 column: int = 0, text: str = ""):
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.text = text
        super().__init__(self.__str__())

    def __str__(self) -> str:
        message = printable(self.message)
        if self.line <= 0:
            return f"{self.file}: error: {message}"
        return f"{self.file}:{self.line}:{self.column}: error: {message}"

    def excerpt(self) -> str:
        """The offending line with a caret under the column."""
        if not self.text:
            return ""
        # One screen line whatever the source holds: control and other
        # unprintable characters show as '?', tabs as a space (one column
        # each, so the caret stays under its character), and a long line is
        # cut to a window around the column.
        text = printable(self.text)
        col = max(self.column - 1, 0)
        if len(text) > EXCERPT_WIDTH:
            start = max(0, min(col - EXCERPT_WIDTH // 2, len(text) - EXCERPT_WIDTH))
            text = text[start:start + EXCERPT_WIDTH]
            col -= start
        return f"    {text}\n    {' ' * col}^"


@dataclass(frozen=True)
class AsmWarning:
    """What an assembly says and goes on after (``%warning``): file:line:column."""

    message: str
    file: str = "<input>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: warning: {printable(self.message)}"


class ConfigError(EmuError):
    """A bad option or combination of options."""


class ImageError(EmuError):
    """A program image that cannot be loaded (too big, bad address)."""
