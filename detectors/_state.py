"""Typed reads from a restored state dict.

``state()`` dicts come back from JSON after a gateway restart, so every value is
``object`` to the type checker and may be anything at runtime. These helpers
narrow one field at a time and raise :class:`ValueError` naming the field, so a
corrupt state file fails loudly at restore instead of deep in the hot path.

>>> get_int({"n": 3}, "n")
3
>>> get_int({"n": "3"}, "n")
Traceback (most recent call last):
...
ValueError: state field 'n' must be an integer, got str
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def get_int(state: dict[str, object], key: str) -> int:
    """``state[key]`` as an int (bools are rejected: ``True`` is not a timestamp)."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"state field {key!r} must be an integer, got {type(value).__name__}")
    return value


def get_opt_int(state: dict[str, object], key: str) -> int | None:
    """``state[key]`` as an int, or None when it is null or missing."""
    if state.get(key) is None:
        return None
    return get_int(state, key)


def get_bool(state: dict[str, object], key: str) -> bool:
    value = state.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"state field {key!r} must be a boolean, got {type(value).__name__}")
    return value


def get_dict(state: dict[str, object], key: str) -> dict[str, object]:
    value = state.get(key)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"state field {key!r} must be a mapping, got {type(value).__name__}")
    return value


def get_float(state: dict[str, object], key: str) -> float:
    """``state[key]`` as a finite float (JSON has no NaN; an int is fine: ``3`` is ``3.0``)."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"state field {key!r} must be a number, got {type(value).__name__}")
    result = float(value)
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError(f"state field {key!r} must be finite, got {result}")
    return result


def get_opt_float(state: dict[str, object], key: str) -> float | None:
    """``state[key]`` as a finite float, or None when it is null or missing."""
    if state.get(key) is None:
        return None
    return get_float(state, key)


def get_int_list(state: dict[str, object], key: str) -> list[int]:
    """``state[key]`` as a list of ints (e.g. recent timestamps)."""
    value = state.get(key)
    if not isinstance(value, list):
        raise ValueError(f"state field {key!r} must be a list, got {type(value).__name__}")
    return [get_int({key: item}, key) for item in value]


def get_float_list(state: dict[str, object], key: str) -> list[float]:
    """``state[key]`` as a list of finite floats (e.g. recent values)."""
    value = state.get(key)
    if not isinstance(value, list):
        raise ValueError(f"state field {key!r} must be a list, got {type(value).__name__}")
    return [get_float({key: item}, key) for item in value]


def get_each(
    state: dict[str, object],
    key: str,
    parse: Callable[[dict[str, object]], _T],
    what: str,
    errors: tuple[type[Exception], ...] = (ValueError,),
) -> dict[str, _T]:
    """``state[key]``, a mapping of name to sub-state, with every sub-state parsed.

    What the stateful detectors keep per device: a corrupt entry fails the whole
    restore with a ValueError that names it (``what`` and the name), so the
    operator can find it in the state file.

    >>> get_each({"d": {"a": {"n": 1}}}, "d", lambda raw: get_int(raw, "n"), "device")
    {'a': 1}
    >>> get_each({"d": {"a": {"n": "1"}}}, "d", lambda raw: get_int(raw, "n"), "device")
    Traceback (most recent call last):
    ...
    ValueError: device 'a': state field 'n' must be an integer, got str
    """
    result: dict[str, _T] = {}
    for name, raw in get_dict(state, key).items():
        if not isinstance(raw, dict):
            raise ValueError(f"{what} {name!r}: must be a mapping")
        try:
            result[name] = parse(raw)
        except errors as exc:
            raise ValueError(f"{what} {name!r}: {exc}") from None
    return result
