"""One error hierarchy for everything the emulator reports to a user.

Architectural events (page faults, #GP ...) are not errors: they are
``hw.exceptions.GuestFault`` values handled inside the CPU.  The classes here
are what reaches the command line, which prints ``str(err)`` on one line.
"""


class EmuError(Exception):
    """Base of every error the emulator reports to its user."""


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
        if self.line <= 0:
            return f"{self.file}: error: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: error: {self.message}"

    def excerpt(self) -> str:
        """The offending line with a caret under the column."""
        if not self.text:
            return ""
        return f"    {self.text}\n    {' ' * max(self.column - 1, 0)}^"


class ConfigError(EmuError):
    """A bad option or combination of options."""


class ImageError(EmuError):
    """A program image that cannot be loaded (too big, bad address)."""
