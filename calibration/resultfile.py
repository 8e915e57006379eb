"""Calibration result files: pydantic models written and read as YAML.

Every result file carries a ``kind`` so that giving the wrong file to a command
(a floor fit where intrinsics are expected) is a clear error, not a crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import StoresenseError, describe_validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)


class _CompactDumper(yaml.SafeDumper):
    """Writes lists of numbers in flow style (``[1.0, 2.0]``), the rest in block style."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flat = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat and len(data) > 0)


_CompactDumper.add_representer(list, _represent_list)


def save_result(model: BaseModel, path: str | Path) -> Path:
    """Write ``model`` as YAML to ``path`` (parent folders are created)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.dump(model.model_dump(mode="json"), Dumper=_CompactDumper, sort_keys=False, width=120),
                        encoding="utf-8")
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot write: {exc}") from None
    return path


def read_text(path: str | Path) -> str:
    """The text of a user-given file; a missing or unreadable file is one clear error naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoresenseError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoresenseError(f"{path}: cannot read: {exc}") from None


def parse_yaml(text: str, path: str | Path):
    """Parse YAML ``text`` read from ``path``; a syntax error names the file."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StoresenseError(f"{path}: invalid YAML: {exc}") from None


def load_result(model_cls: type[ModelT], path: str | Path) -> ModelT:
    """Read a result file written by :func:`save_result`; errors name the file and field."""
    path = Path(path)
    data = parse_yaml(read_text(path), path)
    expected = model_cls.model_fields["kind"].default
    if not isinstance(data, dict) or data.get("kind") != expected:
        got = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise StoresenseError(f"{path}: not a {expected} file (kind: {got!r})")
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise StoresenseError(f"{path}: {describe_validation_error(exc)}") from None
