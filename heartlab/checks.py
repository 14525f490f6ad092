"""Range checks of settings, each failing with one :class:`HeartlabError` line that names the setting.

Used for gin bindings (``fit.epochs``), search-section fields and command-line options alike, before
anything is created.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from heartlab.errors import HeartlabError


def is_whole(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def whole(setting: str, value: Any, minimum: int, *, optional: bool = False, unit: str = "") -> None:
    """``value`` must be a whole number ``>= minimum`` (or ``None`` when ``optional``)."""
    if optional and value is None:
        return
    if not is_whole(value) or value < minimum:
        what = f"a whole number{f' of {unit}' if unit else ''} >= {minimum}{' or None' if optional else ''}"
        raise HeartlabError(f"{setting} must be {what}, got {value!r}")


def number(
    setting: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """``value`` must be a finite number in the interval from ``low`` to ``high`` (open ends as flagged)."""
    inside = is_number(value) and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise HeartlabError(f"{setting} must be a number in {interval}, got {value!r}")


def one_of(setting: str, value: Any, options: Sequence[Any]) -> None:
    if value not in options:
        raise HeartlabError(f"{setting} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")


def boolean(setting: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise HeartlabError(f"{setting} must be True or False, got {value!r}")
