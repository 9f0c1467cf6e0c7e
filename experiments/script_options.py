"""``key=value`` arguments of the scripts in experiments/: each converted and checked before any work starts, and a
bad one is one ``error:`` line and exit code 2, as amc's own entry points do."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_options(
    argv: list[str], spec: Mapping[str, Callable[[str], Any]], defaults: Mapping[str, Any], usage: str
) -> dict[str, Any]:
    """``defaults`` overridden by the ``key=value`` arguments, each converted by ``spec[key]`` (which raises
    ``ValueError`` with the reason for a value it refuses)."""
    options = dict(defaults)
    for arg in argv:
        key, has_value, value = arg.partition("=")
        if not has_value or key not in spec:
            fail(f"unknown argument {arg!r}; usage: {usage}")
        try:
            options[key] = spec[key](value)
        except ValueError as error:
            fail(f"{key}={value}: {error}")
    return options


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be ≥ 1")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("must be > 0")
    return number


def fractions(value: str) -> list[str]:
    """Comma-separated budgets, each in (0, 1]; kept as written, since they name run folders (budget_0.25)."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items or any(not 0 < float(item) <= 1 for item in items):
        raise ValueError("want fractions in (0, 1], comma-separated (e.g. 0.25,0.5)")
    return items


def one_of(*choices: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"want one of {', '.join(choices)}")
        return value

    return check
