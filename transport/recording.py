"""Recording and replay of message streams (JSON lines).

Any stage's input or output can be recorded: one line per message,
``{"topic": "...", "msg": {...}}``, where ``msg`` is the message exactly as it
went on the wire. The message's own ``ts`` is the recording's clock.

:func:`replay` reads a recording back as messages, as fast as possible or at
the recorded speed (``speed=1.0``; ``2.0`` is twice as fast). Lines that are not
valid are counted and reported with their file and line number, then skipped.
Replay is deterministic: a stage fed the same recording produces the same
bytes, so recordings double as regression tests.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import IO, Iterable, Iterator

from ..contracts import Decoder, Envelope, encode, topic_for
from ..errors import StoresenseError

log = logging.getLogger(__name__)


class Recorder:
    """Writes messages to a JSON-lines recording (``append``: after what the file holds); usable as ``emit``."""

    def __init__(self, path: str | Path, store: str, *, append: bool = False):
        self.path = Path(path)
        self.store = store
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = open(self.path, "ab" if append else "wb")
        if append and self._fh.tell() > 0:  # a process killed mid-line left a torn last line: end it
            with open(self.path, "rb") as fh:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    self._fh.write(b"\n")
        self.count = 0

    def __call__(self, msg: Envelope) -> None:
        self.write(msg)

    def write(self, msg: Envelope) -> None:
        """Append one message."""
        topic = json.dumps(topic_for(self.store, msg)).encode()
        self._fh.write(b'{"topic":' + topic + b',"msg":' + encode(msg) + b"}\n")
        self.count += 1

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record(messages: Iterable[Envelope], path: str | Path, store: str) -> int:
    """Write all ``messages`` to ``path``; returns how many were written."""
    with Recorder(path, store) as rec:
        for msg in messages:
            rec.write(msg)
        return rec.count


def replay(path: str | Path, *, speed: float | None = None, decoder: Decoder | None = None,
           sleep=time.sleep, clock=time.monotonic) -> Iterator[Envelope]:
    """Yield the messages of a recording.

    ``speed=None`` replays as fast as possible; a number replays at that multiple
    of the recorded pace (by each message's ``ts``). Malformed lines are counted
    in ``decoder`` (one is created when not given) and logged as ``FILE:LINE``.
    Raises :class:`StoresenseError` when the file cannot be opened.
    """
    path = Path(path)
    decoder = decoder or Decoder(f"replay {path.name}", dedupe=False)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot open recording: {exc.strerror}") from None
    if speed is not None and speed <= 0:
        raise StoresenseError(f"replay speed must be positive, got {speed}")
    first_ts = start = None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            origin = f"{path}:{n}"
            try:
                obj = json.loads(line)
                payload = json.dumps(obj["msg"], separators=(",", ":"))
            except (ValueError, KeyError, TypeError) as exc:
                decoder.rejected["bad recording line"] += 1
                log.warning("%s: skipped line: not a recording line (%s)", origin, exc)
                continue
            msg = decoder.decode(payload, origin)
            if msg is None:
                continue
            if speed is not None:
                if first_ts is None:
                    first_ts, start = msg.ts, clock()
                due = start + (msg.ts - first_ts) / speed
                delay = due - clock()
                if delay > 0:
                    sleep(delay)
            yield msg
