"""Plain CSV walk tests: BLE sightings as a store engineer's logger writes them.

A walk test is three or four CSV files a spreadsheet can make:

``sightings.csv``  ``ts,node,tag,rssi``   one packet a line: time, receiver node id (one of the
                                          store's ``ble_nodes``), tag id, RSSI in dBm
``truth.csv``      ``ts,tag,x,y``         where each tag really was (interpolated per tag)
``map.csv``        ``x,y,<node>...``      optional radio map (fingerprints; empty cell = not heard)
``refs.csv``       ``tag,x,y[,height]``   optional reference tags for ``storesense calibrate ble``

``ts`` is seconds (any epoch) or an ISO 8601 time (``2024-05-02T10:15:03.250``; no zone means
UTC). Extra columns after the required ones are ignored (a logger's ``mac`` or ``tx_power``).
:func:`read_sightings_csv` turns the file into the project's own ``ble_sighting`` messages in
time order, so the evaluation replays them exactly as a live system would;
:func:`load_sightings` reads either this CSV or a JSONL recording. A bad line raises
:class:`~storesense.errors.StoresenseError` naming the file, line and column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from ...contracts import BleSighting, Envelope, Stamper
from ...errors import StoresenseError

SIGHTINGS_HEADER = ("ts", "node", "tag", "rssi")


def parse_ts(text: str) -> float:
    """Seconds from a number or an ISO 8601 time (UTC when no zone is given). Raises ValueError."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        value = stamp.timestamp()
    if not math.isfinite(value):
        raise ValueError(f"not a finite time: {text!r}")
    return value


def read_csv_rows(path: str | Path, header: tuple[str, ...], what: str) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of a CSV's non-empty data rows, after checking its first columns are ``header``.

    Header names are compared without case or spaces (a spreadsheet's BOM is dropped); raises
    StoresenseError naming the file when it cannot be read or the header differs.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if not rows or tuple(h.strip().lower() for h in rows[0][:len(header)]) != header:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise StoresenseError(f"{path}:1: expected the header '{','.join(header)}' (got {got!r})")
    return [(n, row) for n, row in enumerate(rows[1:], 2) if row and any(c.strip() for c in row)]


def read_sightings_csv(path: str | Path, *, run_id: str = "walktest") -> list[Envelope]:
    """The CSV's rows as ``BleSighting`` messages (per-node sequence numbers), sorted by time."""
    path = Path(path)
    parsed: list[tuple[float, int, str, str, float]] = []
    for n, row in read_csv_rows(path, SIGHTINGS_HEADER, "sightings"):
        if len(row) < 4:
            raise StoresenseError(f"{path}:{n}: expected 'ts,node,tag,rssi', got {','.join(row)!r}")
        node, tag = row[1].strip(), row[2].strip()
        if not node or not tag:
            raise StoresenseError(f"{path}:{n}: empty {'node' if not node else 'tag'}")
        try:
            ts = parse_ts(row[0])
        except ValueError:
            raise StoresenseError(f"{path}:{n}: column ts: not seconds or an ISO time: {row[0]!r}") from None
        try:
            rssi = float(row[3])
        except ValueError:
            rssi = math.nan
        if not math.isfinite(rssi) or not -130.0 <= rssi <= 20.0:
            raise StoresenseError(f"{path}:{n}: column rssi: expected dBm between -130 and 20, got {row[3]!r}")
        parsed.append((ts, n, node, tag, rssi))
    if not parsed:
        raise StoresenseError(f"{path}: no sightings")
    parsed.sort()
    stampers: dict[str, Stamper] = {}
    out: list[Envelope] = []
    for ts, _, node, tag, rssi in parsed:
        st = stampers.get(node) or stampers.setdefault(node, Stamper(node, run_id=run_id))
        out.append(st.make(BleSighting, ts, node=node, tag=tag, rssi=rssi))
    return out


def write_sightings_csv(messages: Iterable[Envelope], path: str | Path) -> int:
    """Write the ``ble_sighting`` messages among ``messages`` as ``ts,node,tag,rssi``; returns the count."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(SIGHTINGS_HEADER)
        for m in messages:
            if isinstance(m, BleSighting):
                w.writerow([f"{m.ts:.3f}", m.node, m.tag, f"{m.rssi:.1f}"])
                count += 1
    return count


def is_sightings_csv(path: str | Path) -> bool:
    """True for a ``.csv`` file (the walk-test format); anything else is read as a JSONL recording."""
    return Path(path).suffix.lower() == ".csv"


def load_sightings(path: str | Path) -> list[Envelope]:
    """The ``ble_sighting`` messages of a walk-test CSV or of a JSONL recording, in time order."""
    if is_sightings_csv(path):
        return read_sightings_csv(path)
    from ...transport.recording import replay

    msgs = [m for m in replay(path) if isinstance(m, BleSighting)]
    if not msgs:
        raise StoresenseError(f"{path}: no ble_sighting messages in the recording")
    return sorted(msgs, key=lambda m: m.ts)
