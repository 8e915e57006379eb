"""Checkout terminal tokens: one per terminal, stored only as SHA-256 hashes.

The terminals file (YAML) is kept apart from the store config, which every node
reads; it lists each terminal, the hash of its token and what it may do::

    terminals:
      - id: till-1
        token_sha256: 5e8848...   # sha256 of the token, hex
        roles: [checkout, review]

A token is a random 256-bit string shown once when it is made
(:func:`add_terminal`, or ``storesense hub --add-terminal till-1``); the hub
keeps only its hash and compares hashes in constant time. Roles:
``checkout`` (read carts, settle, correct lines), ``review`` (decide
flagged lines) and ``viewer`` (the live page's feed: every shopper's position
and every open cart; a screen in the back office holds only this role).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, describe_validation_error

Role = Literal["checkout", "review", "viewer"]
ROLES: tuple[str, ...] = ("checkout", "review", "viewer")


class TerminalEntry(BaseModel):
    """One terminal in the terminals file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Terminal id (printed on receipts).")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the terminal's token, hex.")
    roles: list[Role] = Field(default_factory=lambda: list(ROLES), description="What the terminal may do.")


class TerminalsFile(BaseModel):
    """The terminals file."""

    model_config = ConfigDict(extra="forbid")

    terminals: list[TerminalEntry] = Field(default_factory=list, description="Terminals and their token hashes.")


@dataclass(frozen=True)
class Terminal:
    """An authenticated terminal."""

    id: str
    roles: tuple[str, ...]


def hash_token(token: str) -> str:
    """Hex SHA-256 of a token (tokens are random, so a plain hash is enough)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TerminalRegistry:
    """Verifies bearer tokens against the configured hashes."""

    def __init__(self, entries: list[TerminalEntry] | None = None):
        self.entries = list(entries or [])
        ids = [e.id for e in self.entries]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"terminals: duplicate terminal id {dupes[0]!r}")

    @classmethod
    def from_tokens(cls, tokens: dict[str, str], roles: tuple[str, ...] = ROLES) -> TerminalRegistry:
        """A registry from ``{terminal id: token}`` (tests and demos)."""
        return cls([TerminalEntry(id=i, token_sha256=hash_token(t), roles=list(roles)) for i, t in tokens.items()])

    @classmethod
    def load(cls, path: str | Path) -> TerminalRegistry:
        """Read a terminals file; :class:`ConfigError` names the file and field on a problem."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read terminals file: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping with 'terminals', got {type(data).__name__}")
        try:
            parsed = TerminalsFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {describe_validation_error(exc)}") from None
        try:
            return cls(parsed.terminals)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def verify(self, token: str | None) -> Terminal | None:
        """The terminal owning ``token``, or None for a missing or wrong token."""
        if not token:
            return None
        digest = hash_token(token)
        found = None
        for e in self.entries:  # compare against every entry: the time does not depend on which matched
            if hmac.compare_digest(digest, e.token_sha256):
                found = e
        return Terminal(found.id, tuple(found.roles)) if found else None

    def __len__(self) -> int:
        return len(self.entries)


def add_terminal(path: str | Path, terminal_id: str, roles: tuple[str, ...] = ROLES) -> str:
    """Add (or replace) a terminal in the terminals file with a fresh token; returns the token."""
    path = Path(path)
    entries = TerminalRegistry.load(path).entries if path.exists() else []
    token = secrets.token_urlsafe(32)
    entry = TerminalEntry(id=terminal_id, token_sha256=hash_token(token), roles=list(roles))
    entries = [e for e in entries if e.id != terminal_id] + [entry]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"terminals": [e.model_dump() for e in entries]}, sort_keys=False)
    path.write_text("# storesense hub terminals: token hashes only (the tokens themselves are never stored)\n" + text)
    path.chmod(0o600)
    return token
