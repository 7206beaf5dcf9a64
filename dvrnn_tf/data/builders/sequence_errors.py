"""The one error the sequence-file loaders raise, and how its one-line messages are built."""
from __future__ import annotations

import os
import re


class SequenceFileError(ValueError):
    """A sequence file or folder that cannot be used; the message is always one line."""

    def __init__(self, message: str):
        # Paths and wrapped library errors may carry line breaks: the message must stay one line.
        super().__init__(re.sub(r"\s*[\r\n]+\s*", " ", str(message)).strip())


def fail(path, problem: str, key: str | None = None) -> SequenceFileError:
    """``<path> [key 'k']: <problem>`` as a ``SequenceFileError`` (to be raised)."""
    where = os.fspath(path) if key is None else f"{os.fspath(path)} [key {key!r}]"
    return SequenceFileError(f"{where}: {problem}")


def first_line(error: BaseException) -> str:
    """``"TypeName: first line of the message"`` of a wrapped library error."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
