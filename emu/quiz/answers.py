"""Reading answers: numbers, words and lists as a student or an autograder
writes them in ANSWERS.json, checked and normalized so that two answers
compare equal exactly when they mean the same thing.
"""

from __future__ import annotations

MAX_NUMBER = (1 << 64) - 1


class AnswerError(ValueError):
    """An answer that does not have the shape its question asks for."""


def number(value, what: str) -> int:
    """An integer from 0 to 2**64 - 1: a JSON number, or a string of ASCII
    digits such as "0x1f", "31" or "0x0010_0000" (Python's integer
    literals; no answer of the quiz is negative or wider)."""
    if isinstance(value, bool):
        raise AnswerError(f"{what} must be a number, not {str(value).lower()}")
    got = None
    if isinstance(value, int):
        got = value
    elif isinstance(value, str) and value.isascii():   # (int() reads any script's digits)
        try:
            got = int(value.strip(), 0)
        except ValueError:
            pass
    if got is None:
        raise AnswerError(f"{what} must be a number (such as 4096 or \"0x1000\"), "
                          f"not {_short(value)}")
    if not 0 <= got <= MAX_NUMBER:
        raise AnswerError(f"{what} must be between 0 and 2**64 - 1, not {_short(value)}")
    return got


def word(value, what: str, choices) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise AnswerError(f"{what} must be one of {', '.join(choices)}, not {_short(value)}")


def flag(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise AnswerError(f"{what} must be true or false, not {_short(value)}")


def listing(value, what: str, length: int | None = None) -> list:
    if not isinstance(value, list):
        raise AnswerError(f"{what} must be a list, not {_short(value)}")
    if length is not None and len(value) != length:
        raise AnswerError(f"{what} must have {length} item{'s' if length != 1 else ''}, "
                          f"not {len(value)}")
    return value


def record(value, what: str, keys=None) -> dict:
    if not isinstance(value, dict):
        raise AnswerError(f"{what} must be an object, not {_short(value)}")
    if keys is not None:
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise AnswerError(f"{what} has an unknown field '{unknown[0]}' "
                              f"(fields: {', '.join(keys)})")
    return value


def _short(value) -> str:
    import json
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
