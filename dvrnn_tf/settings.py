"""Settings: the named, typed and bounded values a part of the package takes.

A model family, a data source and the training loop each declare the settings they take as
`Setting`s. The training binary defines one flag per setting (`--name`), and `resolve` checks
values built in Python with the same words, so the binary and the library reject the same
values alike. A part receives its own `Values` only: a model family never sees a data flag.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its flag name, default, help text and what values are allowed.

    The default's type is the setting's type (bool, int, float or str). `lower` / `upper`
    bound numbers (inclusive); `choices` lists the allowed strings.
    """

    name: str
    default: Any
    help: str
    lower: float | None = None
    upper: float | None = None
    choices: tuple | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, value):
        """`value` as the setting's type, or ValueError naming the flag and what is allowed."""
        value = self._convert(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"--{self.name}={value!r} is not allowed; allowed: "
                             f"{', '.join(map(str, self.choices))}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{self.name}={value} is not allowed; it must be a finite number")
        if self.lower is not None and value < self.lower:
            raise ValueError(f"--{self.name}={value} is not allowed; it must be >= {self.lower}")
        if self.upper is not None and value > self.upper:
            raise ValueError(f"--{self.name}={value} is not allowed; it must be <= {self.upper}")
        return value

    def _convert(self, value):
        kind = self.type
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    pass
        elif kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        elif isinstance(value, str):
            return value
        raise ValueError(f"--{self.name}={value!r} is not allowed; it must be a "
                         f"{kind.__name__}")


class Values(Mapping):
    """Checked values of a tuple of settings, read as a mapping or as attributes."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, name):
        return self._values[name]

    def __getattr__(self, name):
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"no setting {name!r} here; these settings are "
                                 f"{', '.join(self.__dict__['_values']) or 'none'}") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __hash__(self):
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self):
        return f"Values({self._values!r})"


def unique(settings: Iterable[Setting]) -> tuple[Setting, ...]:
    """Settings in first-seen order, one per name; two different declarations of one name
    are a programming error (one flag cannot have two defaults)."""
    seen: dict[str, Setting] = {}
    for s in settings:
        if s.name in seen and seen[s.name] != s:
            raise TypeError(f"setting {s.name!r} is declared twice, differently: "
                            f"{seen[s.name]} vs {s}")
        seen.setdefault(s.name, s)
    return tuple(seen.values())


def resolve(settings: Iterable[Setting], given: Mapping[str, Any]) -> Values:
    """Values of `settings` from `given` (a setting not given takes its default), each
    checked; keys of `given` that are not among `settings` are ignored (the caller sorts
    values between parts)."""
    return Values({s.name: s.check(given[s.name]) if s.name in given else s.default
                   for s in unique(settings)})
