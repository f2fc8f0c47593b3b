"""A secret setting's text, which never shows itself.

Settings are read on every cold start, so they are plain Python (no pydantic):
this is the one type they need that the standard library lacks.
"""

from __future__ import annotations


class Secret:
    """Text that prints as stars: in a repr, an f-string, a log or a
    traceback's locals, only `get_secret_value()` gives it out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret is text")
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))
