"""The fusion node's input journal: what it needs to rebuild its state after a crash.

The fusion node is deterministic over its input: the same messages, handed over
in the same order with the same pauses (:meth:`FusionNode.flush` when the live
input goes quiet), give the same sessions, tracks, carts and outputs, with the
same event ids for the same run id. So instead of saving its state, the live
node writes every input message, and every flush, to an append-only journal
*before* fusing it. After a crash (SIGKILL, power loss) or a stop, the next start
reads the journal back: same run id, same messages, same flushes, so the node
ends up where it was, re-emitting the messages it had already published with
the same event ids (consumers drop them as duplicates) and nothing with a new
one; then it carries on with the live input.

File format (JSON lines)::

    {"journal": 1, "store": "demo-shop", "run_id": "9f2c...", "epoch": 0}
    {"event_id": ..., "type": "person_observation", ...}      one input message, as on the wire
    "flush"                                                   the live input paused: the node flushed

Durability: each entry is written to the operating system as soon as it is
taken (before the node fuses it), so killing the process loses nothing it had
read; ``fsync`` runs at most every ``fsync_s`` seconds while messages flow, at
every pause of the input and at close, so a power loss loses at most the last
``fsync_s`` seconds of input (0: fsync every entry). A torn last line (power
loss mid-write) is reported and skipped. Messages still in flight in ZeroMQ
when the node dies (sent by an edge node, not yet read) are not in the journal:
ZeroMQ PUB/SUB has no acknowledgement.

Rotation: when the store is empty (no open session, no check-in waiting,
nothing held for reordering) at a pause of the input, and the journal
holds at least ``rotate_entries`` entries, the journal starts a new *epoch*: the
file is replaced atomically by one holding only the header of epoch ``k + 1``
and the node by a fresh one whose run id is ``<run id>.<k + 1>``. A restart
replays only the current epoch. The fresh node forgets nothing that matters in
an empty store (closed sessions, tracks of shoppers who left, BLE filters of
tags no longer there), and its ids cannot collide with the previous epoch's.
Replay never rotates: an epoch boundary is the file itself. A clean stop with the
store empty rotates too, whatever the size, so the next start has nothing to replay.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..contracts import Envelope, MessageError, decode, encode
from ..errors import StoresenseError

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
FLUSH = b'"flush"'


@dataclass
class JournalState:
    """What a journal file holds: its run id, epoch and entries (``None`` entries are flushes)."""

    run_id: str
    epoch: int
    entries: list[Envelope | None] = field(default_factory=list)
    torn: int = 0  # unreadable lines skipped (a torn write at the end)

    @property
    def node_run_id(self) -> str:
        """The run id of the node this epoch runs: the journal's run id, then ``.<epoch>`` after a rotation."""
        return epoch_run_id(self.run_id, self.epoch)


def epoch_run_id(run_id: str, epoch: int) -> str:
    """The fusion node's run id in ``epoch`` of a journal whose run id is ``run_id``."""
    return run_id if epoch == 0 else f"{run_id}.{epoch}"


class InputJournal:
    """An append-only, fsync'ed journal of a fusion node's input; see the module docstring."""

    def __init__(self, path: str | Path, store: str, *, fsync_s: float = 1.0, rotate_entries: int = 50_000):
        self.path = Path(path)
        self.store = store
        self.fsync_s = fsync_s
        self.rotate_entries = rotate_entries
        self.run_id: str | None = None
        self.epoch = 0
        self.entries = 0  # entries in the current epoch (messages and flushes)
        self._fh: IO[bytes] | None = None
        self._synced = time.monotonic()
        self._dirty = False

    # ------------------------------------------------------------------ reading

    def read(self) -> JournalState | None:
        """The journal's content, or None when there is no journal yet.

        Raises :class:`StoresenseError` naming the file when it is not a journal
        of this store.
        """
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoresenseError(f"{self.path}: cannot read the fusion journal: {exc.strerror}") from None
        with fh:
            first = fh.readline()
            try:
                head = json.loads(first)
                run_id, epoch, store = str(head["run_id"]), int(head["epoch"]), head["store"]
                if head.get("journal") != JOURNAL_VERSION:
                    raise ValueError(f"version {head.get('journal')!r}, expected {JOURNAL_VERSION}")
            except (ValueError, KeyError, TypeError) as exc:
                if not first.strip():  # crashed while creating it: nothing was journaled yet
                    return None
                raise StoresenseError(f"{self.path}:1: not a fusion journal header ({exc})") from None
            if store != self.store:
                raise StoresenseError(f"{self.path}: a journal of store {store!r}, this node is {self.store!r}")
            state = JournalState(run_id, epoch)
            for n, line in enumerate(fh, 2):
                line = line.strip()
                if not line:
                    continue
                if line == FLUSH:
                    state.entries.append(None)
                    continue
                try:
                    state.entries.append(decode(line))
                except MessageError as exc:
                    state.torn += 1
                    log.warning("%s:%d: skipped an unreadable journal line (%s)", self.path, n, exc)
        return state

    # ------------------------------------------------------------------ writing

    def open(self, run_id: str, epoch: int = 0, *, entries: int = 0) -> None:
        """Append to the journal of ``run_id``/``epoch`` (creating it when there is none)."""
        self.run_id, self.epoch, self.entries = run_id, epoch, entries
        if not self.path.exists():
            self._write_header(run_id, epoch)
        self._fh = open(self.path, "ab", buffering=0)

    def _write_header(self, run_id: str, epoch: int) -> None:
        """Replace the journal, atomically, by one holding only the header of ``epoch``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        head = {"journal": JOURNAL_VERSION, "store": self.store, "run_id": run_id, "epoch": epoch}
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(head).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def message(self, msg: Envelope) -> None:
        """Journal one input message (before the node fuses it)."""
        self._append(encode(msg) + b"\n")
        if self.fsync_s <= 0 or time.monotonic() - self._synced >= self.fsync_s:
            self.sync()

    def flush(self) -> None:
        """Journal a flush of the node (the live input paused), and fsync."""
        self._append(FLUSH + b"\n")
        self.sync()

    def _append(self, line: bytes) -> None:
        assert self._fh is not None, "open() first"
        self._fh.write(line)  # unbuffered: in the operating system at once, a SIGKILL cannot lose it
        self.entries += 1
        self._dirty = True

    def sync(self) -> None:
        """fsync what was written."""
        if self._fh is not None and self._dirty:
            os.fsync(self._fh.fileno())
            self._dirty = False
        self._synced = time.monotonic()

    def rotate(self) -> str:
        """Start the next epoch (the store is empty): returns the new node's run id."""
        assert self.run_id is not None and self._fh is not None, "open() first"
        self._fh.close()
        self.epoch += 1
        self._write_header(self.run_id, self.epoch)
        self._fh = open(self.path, "ab", buffering=0)
        self.entries = 0
        self._dirty = False
        return epoch_run_id(self.run_id, self.epoch)

    @property
    def is_open(self) -> bool:
        """Whether the journal is open for appending."""
        return self._fh is not None

    def close(self) -> None:
        """fsync and close (the journal stays: the next start resumes from it)."""
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
