"""Scales that print their weight as text lines on a serial port (pyserial).

Bench and counter scales speak a handful of line formats; :func:`parse_scale_line`
reads all of these (and plain numbers), tolerating padding, signs separated from
the digits, units glued to the number and trailing status marks:

======================  ==================================================
``ST,GS,+  1234.5 g``   A&D / CAS: ST stable, US unstable, OL overload; GS gross, NT net
``ST,GS,01,+0001.234kg`` the same with a device number and kilograms
``S S      100.00 g``   Mettler Toledo MT-SICS reply to ``SI``: S stable, D dynamic;
                        ``S +`` / ``S -`` over- and underload, ``S I`` busy, ``ES`` error
``N     +    123.45 g`` Sartorius SBI (N net, G gross)
``   123.45 g ?``       Ohaus / Kern style: ``?`` marks an unstable weight
``1234.5``              a bare number, taken as grams
======================  ==================================================

g, kg, mg, lb, oz and ct are converted to grams. Lines that carry no weight
(banners, the echo of a request) are skipped; a line in counting mode (``pcs``)
or an error reply is a bad reading.

:class:`SerialScale` is the :class:`~.base.LoadCell` over such a port: it reads
whatever the scale streams, or sends ``request`` (e.g. ``SI``) for each reading.
A port that disappears (USB unplugged) gives timeouts while it is reopened every
few seconds.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from .base import LoadCell, LoadCellError, SensorReadError, SensorTimeout

#: Grams per unit for the units scales print.
UNIT_GRAMS = {"g": 1.0, "kg": 1000.0, "mg": 0.001, "lb": 453.59237, "lbs": 453.59237, "oz": 28.349523125,
              "ct": 0.2}
#: Header tokens that may precede the number (stability, gross/net/tare, MT-SICS echo).
HEADER_TOKENS = {"ST", "US", "QT", "WT", "GS", "NT", "TR", "GR", "TW", "PT", "N", "G", "T", "S", "D", "SI", "W",
                 "NET", "GRS"}
#: Seconds between attempts to reopen a port that went away.
REOPEN_S = 2.0

_LINE = re.compile(
    r"^(?P<head>(?:[A-Za-z]{1,3}\s*[,: ]\s*)*?)"  # header tokens: ST, GS, S S, N, Net:
    r"(?:\d{1,2}\s*,\s*)?"  # A&D / CAS device number field
    r"(?P<sign>[+-]?)\s*(?P<num>\d+(?:\.\d*)?|\.\d+)(?:[eE](?P<exp>[+-]?\d+))?"
    r"\s*(?P<unit>[A-Za-z]{1,3})?\s*(?P<tail>[?*!]|[A-Za-z]{1,5})?\s*$"
)
_OVERLOAD = re.compile(r"^(?:OL\b.*|SI?\s*\+\s*|[-\s]*(?:OVERLOAD|OVER|HIGH|OL)[-\s]*)$", re.IGNORECASE)
_UNDERLOAD = re.compile(r"^(?:SI?\s*-\s*|[-\s]*(?:UNDERLOAD|UNDER|LOW|UL)[-\s]*)$", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"\s*[+-]?\s*\d+,\d+\s*[A-Za-z]{0,3}\s*[?*]?\s*")
_ERROR = re.compile(r"^(?:E[STL]|S\s+[IL]|SI\s+[IL])\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ScaleReading:
    """What one scale line says.

    ``status`` is ``ok`` (``grams`` set), ``overload``, ``underload`` or
    ``error`` (``reason`` says why). ``stable`` is the scale's own stability
    flag when the line has one, else None.
    """

    status: str
    grams: float | None = None
    stable: bool | None = None
    reason: str = ""


def parse_scale_line(line: str | bytes) -> ScaleReading | None:
    """Parse one line from a scale; None when it carries no weight at all (banner, echo, blank)."""
    if isinstance(line, (bytes, bytearray)):
        line = bytes(line).decode("ascii", errors="replace")
    text = line.strip().strip("\x02\x03")  # some scales frame lines with STX / ETX
    if not text:
        return None
    if _ERROR.match(text):
        return ScaleReading("error", reason=f"the scale answered {text!r}")
    if _OVERLOAD.match(text):
        return ScaleReading("overload", reason=f"overload ({text!r})")
    if _UNDERLOAD.match(text):
        return ScaleReading("underload", reason=f"underload ({text!r})")
    if _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    m = _LINE.match(text)
    if m is None:
        return None
    head = [t.upper() for t in re.split(r"[,: ]+", m["head"]) if t]
    if any(t not in HEADER_TOKENS for t in head):
        return None  # words we do not know before the number: a banner, not a weight
    tail = (m["tail"] or "").upper()
    unit = (m["unit"] or "g").lower()
    if unit not in UNIT_GRAMS:
        return ScaleReading("error", reason=f"unit {m['unit']!r} is not a weight (counting mode?) in {text!r}")
    value = float(m["num"]) * (10.0 ** int(m["exp"]) if m["exp"] else 1.0)
    if m["sign"] == "-":
        value = -value
    stable: bool | None = None
    if "US" in head or tail == "?" or head[-2:] == ["S", "D"]:
        stable = False
    elif "ST" in head or head[-2:] == ["S", "S"]:
        stable = True
    return ScaleReading("ok", grams=value * UNIT_GRAMS[unit], stable=stable)


class SerialScale(LoadCell):
    """A scale on a serial port (any pyserial URL: ``/dev/ttyUSB0``, ``COM3``, ``socket://host:4001``).

    ``read`` returns grams; an overload comes back as ``+inf`` (``-inf`` for an
    underload) so the node counts it as saturated. ``port`` may be an already
    open pyserial-like object (tests); otherwise it is opened by name.
    """

    unit = "g"

    def __init__(self, name: str, port: str, baudrate: int = 9600, request: str | None = None, *, device=None):
        self.name = name
        self.port_name = port
        self.baudrate = baudrate
        self.request = (request.strip().encode("ascii") + b"\r\n") if request else None
        self.ignored_lines = 0
        self._buf = b""
        self._awaiting_reply = False
        self._next_open = 0.0
        self._port = device if device is not None else self._open()

    def describe(self) -> str:
        """``weight sensor NAME (serial scale on PORT at N Bd)``."""
        return f"weight sensor {self.name} (serial scale on {self.port_name} at {self.baudrate} Bd)"

    def _open(self):
        try:
            import serial
        except ImportError:
            raise LoadCellError(f"{self.describe()}: pyserial is not installed (pip install pyserial)") from None
        try:
            return serial.serial_for_url(self.port_name, baudrate=self.baudrate, timeout=0, write_timeout=1.0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise LoadCellError(f"{self.describe()}: cannot open the port: {exc}") from None

    def _lost(self, exc: Exception) -> SensorTimeout:
        try:
            self._port.close()
        except Exception:  # noqa: BLE001 - it is gone anyway
            pass
        self._port = None
        self._buf = b""
        self._awaiting_reply = False
        self._next_open = time.monotonic() + REOPEN_S
        return SensorTimeout(f"{self.describe()}: port lost: {exc}")

    def _pump(self) -> None:
        if self._port is None:
            if time.monotonic() < self._next_open:
                raise SensorTimeout(f"{self.describe()}: port not available")
            try:
                self._port = self._open()
            except LoadCellError as exc:
                self._next_open = time.monotonic() + REOPEN_S
                raise SensorTimeout(str(exc)) from None
        try:
            waiting = self._port.in_waiting
            if waiting:
                self._buf += self._port.read(waiting)
            if self.request is not None and not self._awaiting_reply:
                self._port.write(self.request)
                self._awaiting_reply = True
        except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException / OSError
            raise self._lost(exc) from None

    def _take_line(self) -> bytes | None:
        for sep in (b"\n", b"\r"):
            i = self._buf.find(sep)
            if i >= 0:
                line, self._buf = self._buf[:i], self._buf[i + 1:]
                return line
        if len(self._buf) > 4096:  # no line ending at all: not a scale we understand
            self._buf = b""
            raise SensorReadError(f"{self.describe()}: 4 KiB without a line ending (wrong baud rate?)")
        return None

    def ready(self) -> bool:
        """True when a complete line is waiting."""
        try:
            self._pump()
        except SensorTimeout:
            return False
        return b"\n" in self._buf or b"\r" in self._buf

    def read(self, timeout_s: float = 1.0) -> float:
        """The next weight in grams (``±inf`` for over/underload)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._pump()
            line = self._take_line()
            while line is not None:
                got = parse_scale_line(line)
                if got is None:
                    self.ignored_lines += 1
                else:
                    self._awaiting_reply = False
                    if got.status == "ok":
                        return float(got.grams)
                    if got.status == "overload":
                        return math.inf
                    if got.status == "underload":
                        return -math.inf
                    raise SensorReadError(f"{self.describe()}: {got.reason}")
                line = self._take_line()
            if time.monotonic() >= deadline:
                self._awaiting_reply = False  # ask again next time
                raise SensorTimeout(f"{self.describe()}: no weight line within {timeout_s:g} s")
            time.sleep(0.002)

    def close(self) -> None:
        """Close the port."""
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None
