"""Error types shared by every component, and one formatter for validation errors.

Config files and wire messages are both validated by pydantic; both report a bad
input the same way: the place (a file or a topic), the field path, and what was
expected. :func:`describe_validation_error` is that one formatter.
"""

from __future__ import annotations

from pydantic import ValidationError


class StoresenseError(Exception):
    """Base class for errors that are reported to the user as one clear line."""


class ConfigError(StoresenseError):
    """A store configuration file is missing, unreadable or invalid."""


class MessageError(StoresenseError):
    """Bytes received from a transport are not a valid storesense message."""


class TransportError(StoresenseError):
    """A broker or socket could not be reached or used."""


def field_path(loc: tuple) -> str:
    """Render a pydantic error location as ``cameras[1].intrinsics.fx``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def describe_validation_error(err: ValidationError, *, limit: int = 5) -> str:
    """Summarise a pydantic ``ValidationError`` as ``path: problem (got X)`` items.

    At most ``limit`` problems are listed; the rest are counted, so a badly broken
    input still gives a readable message.
    """
    problems = []
    errors = err.errors(include_url=False)
    for item in errors[:limit]:
        where = field_path(tuple(item.get("loc", ())))
        msg = item.get("msg", "invalid").removeprefix("Value error, ")
        got = item.get("input")
        shown = ""
        if item.get("type") not in ("missing",) and not isinstance(got, (dict, list)):
            text = repr(got)
            shown = f" (got {text[:60]}{'...' if len(text) > 60 else ''})"
        problems.append(f"{where}: {msg}{shown}")
    if len(errors) > limit:
        problems.append(f"... and {len(errors) - limit} more problem(s)")
    return "; ".join(problems)
