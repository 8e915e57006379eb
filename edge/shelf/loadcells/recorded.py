"""Recorded raw load-cell streams: read them back for replay, write them while running.

A recording holds timestamped *raw* readings, one per line, in the order they
were taken, from any number of sensors. It stands in for the hardware: the
shelf node replays it through exactly the code that handles live readings, so a
recording from a real shelf doubles as a regression test.

JSON lines (``.jsonl``, ``.ndjson``, ``.json``)::

    {"ts": 1718000000.10, "sensor": "ws-A1", "raw": 84213}
    {"ts": 1718000000.10, "sensor": "ws-A2", "raw": null}              # the read timed out
    {"ts": 1718000000.20, "sensor": "ws-A2", "raw": null, "error": "DOUT still low ..."}  # bad frame
    {"ts": 1718000000.20, "sensor": "ws-A3", "raw": "nan"}             # NaN / inf as strings

CSV (``.csv``) with a header ``ts,sensor,raw[,error]``; an empty ``raw`` is a timeout.

``raw`` is in the sensor's own units (HX711 counts, or grams for a serial
scale): the node converts it with the store config's calibration. Lines that
cannot be read are logged with the file and line number, counted and skipped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ....errors import StoresenseError

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class RawReading:
    """One raw reading of one sensor: ``value`` None means the read timed out (or failed, see ``error``)."""

    ts: float
    sensor: str
    value: float | None
    error: str = ""


class BadLine(ValueError):
    """A recording line that is not a reading."""


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise BadLine(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())  # accepts "nan", "inf", "-inf"
        except ValueError:
            pass
    raise BadLine(f"{what} must be a number, got {value!r}")


def _reading(ts, sensor, raw, error) -> RawReading:
    t = _number(ts, "ts")
    if not math.isfinite(t):
        raise BadLine(f"ts must be finite, got {ts!r}")
    if not isinstance(sensor, str) or not sensor.strip():
        raise BadLine(f"sensor must be a non-empty string, got {sensor!r}")
    value = None if raw is None or raw == "" else _number(raw, "raw")
    return RawReading(t, sensor.strip(), value, str(error or ""))


def _parse_json_line(text: str) -> RawReading:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("ts", "sensor"):
        if key not in obj:
            raise BadLine(f"missing {key!r}")
    return _reading(obj["ts"], obj["sensor"], obj.get("raw"), obj.get("error"))


class RecordingReader:
    """Iterates the readings of one recording; counts and logs the lines it skips.

    Raises :class:`~storesense.errors.StoresenseError` naming the file when it
    cannot be opened or has no usable header (CSV).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.read = 0
        self.skipped = 0
        if not self.path.is_file():
            raise StoresenseError(f"{self.path}: no such recording")

    def _skip(self, lineno: int, why: str) -> None:
        self.skipped += 1
        if self.skipped <= 20:
            log.warning("%s:%d: skipped: %s", self.path, lineno, why)
        elif self.skipped == 21:
            log.warning("%s: more lines skipped (counting, not logging)", self.path)

    def __iter__(self) -> Iterator[RawReading]:
        try:
            fh = open(self.path, encoding="utf-8", newline="")
        except OSError as exc:
            raise StoresenseError(f"{self.path}: cannot read: {exc}") from None
        with fh:
            if self.path.suffix.lower() == ".csv":
                yield from self._csv(fh)
            else:
                yield from self._jsonl(fh)

    def _jsonl(self, fh: IO[str]) -> Iterator[RawReading]:
        lineno = 0
        while True:
            try:
                line = fh.readline()
            except UnicodeDecodeError as exc:
                raise StoresenseError(f"{self.path}: line {lineno + 1}: not UTF-8 text ({exc.reason})") from None
            if not line:
                return
            lineno += 1
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                reading = _parse_json_line(text)
            except BadLine as exc:
                self._skip(lineno, str(exc))
                continue
            self.read += 1
            yield reading

    def _csv(self, fh: IO[str]) -> Iterator[RawReading]:
        rows = csv.reader(line for line in fh if line.strip() and not line.lstrip().startswith("#"))
        try:
            header = [h.strip().lower() for h in next(rows)]
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            raise StoresenseError(f"{self.path}: unreadable CSV header: {exc}") from None
        missing = [c for c in ("ts", "sensor", "raw") if c not in header]
        if missing:
            raise StoresenseError(f"{self.path}: CSV header must name ts, sensor and raw (missing {', '.join(missing)})")
        col = {name: header.index(name) for name in ("ts", "sensor", "raw")}
        err_col = header.index("error") if "error" in header else None
        lineno = 1
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                raise StoresenseError(f"{self.path}: line {lineno + 1}: unreadable CSV: {exc}") from None
            lineno += 1
            try:
                if len(row) < len(header):
                    raise BadLine(f"expected {len(header)} fields, got {len(row)}")
                error = row[err_col] if err_col is not None else ""
                reading = _reading(row[col["ts"]], row[col["sensor"]], row[col["raw"]].strip(), error)
            except BadLine as exc:
                self._skip(lineno, str(exc))
                continue
            self.read += 1
            yield reading


def read_recording(path: str | Path) -> Iterator[RawReading]:
    """The readings of a recording (JSON lines or CSV, by suffix), bad lines skipped."""
    return iter(RecordingReader(path))


def _raw_json(value: float | None):
    if value is None:
        return None
    if math.isfinite(value):
        return int(value) if float(value).is_integer() else value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


class RecordingWriter:
    """Writes raw readings as JSON lines (the format :func:`read_recording` reads)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fh: IO[str] = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise StoresenseError(f"{self.path}: cannot write: {exc}") from None
        self.count = 0

    def write(self, reading: RawReading) -> None:
        """Append one reading."""
        obj = {"ts": round(reading.ts, 6), "sensor": reading.sensor, "raw": _raw_json(reading.value)}
        if reading.error:
            obj["error"] = reading.error
        self._fh.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        """Flush and close."""
        self._fh.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_recording(path: str | Path, readings: Iterable[RawReading]) -> int:
    """Write ``readings`` to ``path`` as JSON lines; returns how many."""
    with RecordingWriter(path) as out:
        for r in readings:
            out.write(r)
        return out.count
