"""Reading YAML configuration files (profiles, scenarios) with errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import ConfigError


def read_mapping(path: Path, what: str, error: type[ConfigError]) -> dict[str, Any]:
    """The file's top-level mapping; ``error`` names the file when it is unreadable."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} must be a mapping, got {type(data).__name__}")
    return data


def describe(exc: ValidationError, whole: str) -> str:
    """Every problem as ``field.path: reason``; ``whole`` stands for model-wide checks.

    >>> from pydantic import BaseModel
    >>> class M(BaseModel):
    ...     n: int
    >>> try:
    ...     M.model_validate({"n": "x"})
    ... except ValidationError as e:
    ...     print(describe(e, "(m)"))
    n: Input should be a valid integer, unable to parse string as an integer
    """
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or whole}: {err['msg']}" for err in exc.errors()
    )
