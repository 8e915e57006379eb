"""Load-cell back-ends: the HX711 protocol against a fake GPIO, serial scale lines and ports, opening errors."""

from __future__ import annotations

import math
import sys
import types
from collections import deque

import pytest

from storesense.edge.shelf.loadcells import gpio as gpio_mod
from storesense.edge.shelf.loadcells.base import LoadCellError, SensorReadError, SensorTimeout
from storesense.edge.shelf.loadcells.hx711 import GAIN_PULSES, HX711, twos_complement_24
from storesense.edge.shelf.loadcells.serial_scale import SerialScale, parse_scale_line

DOUT, SCK = 5, 6


class FakeHx711Lines:
    """Two GPIO lines with a simulated HX711 behind them.

    DOUT is low while a conversion (a queued 24-bit frame) waits. Once the
    driver has seen DOUT low, each rising edge of PD_SCK shifts out the next bit,
    MSB first; the 25th pulls DOUT high until the driver looks at DOUT again.
    The pulses after the 24th are recorded per frame (the gain the driver
    chose). Pulses while no conversion was seen ready (the power-down reset)
    shift nothing out.
    """

    def __init__(self, frames=(), dout_stuck: int | None = None):
        self.frames = deque(frames)
        self.dout_stuck = dout_stuck
        self.claimed: dict[int, str] = {}
        self.clock = 0
        self.frame: int | None = None
        self.pulses = 0
        self.gain_pulses: list[int] = []
        self.closed = False
        self.armed = False

    def claim_input(self, pin):
        self.claimed[pin] = "in"

    def claim_output(self, pin, level):
        self.claimed[pin] = "out"
        self.clock = level

    def read(self, pin):
        assert pin == DOUT and self.claimed.get(pin) == "in"
        if self.dout_stuck is not None:
            return self.dout_stuck
        if self.frame is not None:
            if self.pulses <= 24:
                return (self.frame >> (24 - self.pulses)) & 1 if self.pulses else 0
            self.gain_pulses.append(self.pulses - 24)  # frame over: DOUT high, next conversion starts
            self.frame = None
            return 1
        self.armed = bool(self.frames)
        return 0 if self.frames else 1

    def write(self, pin, level):
        assert pin == SCK and self.claimed.get(pin) == "out"
        rising = level == 1 and self.clock == 0
        self.clock = level
        if not rising:
            return
        if self.frame is None:
            if not self.armed:
                return  # pulses while idle (reset, power down)
            self.frame, self.pulses, self.armed = self.frames.popleft(), 0, False
        self.pulses += 1

    def close(self):
        self.closed = True


@pytest.mark.parametrize("frame, value", [
    (0x000000, 0), (0x000001, 1), (0x7FFFFF, 8_388_607), (0x800000, -8_388_608), (0xFFFFFF, -1),
    (0x123456, 0x123456), (0xABCDEF, 0xABCDEF - (1 << 24)), (0xFFF000, -4096),
])
def test_hx711_clocks_out_24_bit_twos_complement(frame, value):
    lines = FakeHx711Lines([frame])
    cell = HX711("ws-A1", lines, DOUT, SCK)
    assert cell.read(timeout_s=0.5) == value
    assert lines.gain_pulses == [1]  # channel A, gain 128
    assert twos_complement_24(frame) == value


@pytest.mark.parametrize("gain", [128, 64, 32])
def test_hx711_sets_the_gain_with_extra_pulses_and_drops_the_first_conversion(gain):
    lines = FakeHx711Lines([0x000100, 0x000200, 0x000300])
    cell = HX711("ws-A1", lines, DOUT, SCK, gain=gain)
    first = cell.read(timeout_s=0.5)
    second = cell.read(timeout_s=0.5)
    if gain == 128:
        assert (first, second) == (0x100, 0x200)
    else:  # the first conversion after power-up is at gain 128: read and dropped
        assert (first, second) == (0x200, 0x300)
    assert set(lines.gain_pulses) == {GAIN_PULSES[gain]}


def test_hx711_times_out_when_no_conversion_comes():
    cell = HX711("ws-A1", FakeHx711Lines([]), DOUT, SCK)
    assert not cell.ready()
    with pytest.raises(SensorTimeout, match=r"ws-A1 \(HX711, DOUT GPIO5, PD_SCK GPIO6\).*DOUT stayed high"):
        cell.read(timeout_s=0.05)


def test_hx711_rejects_a_frame_after_which_dout_stays_low():
    cell = HX711("ws-A1", FakeHx711Lines(dout_stuck=0), DOUT, SCK)
    with pytest.raises(SensorReadError, match="DOUT still low after the frame"):
        cell.read(timeout_s=0.05)


def test_hx711_close_powers_down_and_releases_the_lines():
    lines = FakeHx711Lines([0x10])
    cell = HX711("ws-A1", lines, DOUT, SCK)
    cell.close()
    assert lines.closed and lines.clock == 1
    with pytest.raises(LoadCellError, match="already closed"):
        cell.read(0.01)


def test_hx711_open_without_gpio_names_the_sensor_and_what_is_missing(monkeypatch):
    monkeypatch.setattr(gpio_mod.os.path, "exists", lambda p: False)

    def no_module(name):
        raise ImportError(name)

    monkeypatch.setattr(gpio_mod.importlib, "import_module", no_module)
    with pytest.raises(LoadCellError) as err:
        HX711.open("ws-B2", data_pin=17, clock_pin=27)
    text = str(err.value)
    assert text.startswith("weight sensor ws-B2 (HX711, DOUT GPIO17, PD_SCK GPIO27): cannot open GPIO")
    assert "/dev/gpiochip0" in text and "/dev/gpiomem" in text and "lgpio" in text


def test_hx711_open_on_this_machine_fails_cleanly():
    """No Raspberry Pi here (or in CI): one LoadCellError, never an ImportError or a traceback."""
    try:
        cell = HX711.open("ws-A1", data_pin=5, clock_pin=6)
    except LoadCellError as exc:
        assert "ws-A1" in str(exc)
    else:  # a real Pi with an HX711 on those pins
        cell.close()


def test_hx711_through_the_lgpio_adapter(monkeypatch):
    """The lgpio back-end wires the driver to lgpio's calls (a fake lgpio module with the HX711 behind it)."""
    chip = FakeHx711Lines([0x7FFFFF, 0x000042])
    fake = types.ModuleType("lgpio")
    fake.gpiochip_open = lambda n: ("handle", n)
    fake.gpio_claim_input = lambda h, pin: chip.claim_input(pin)
    fake.gpio_claim_output = lambda h, pin, level: chip.claim_output(pin, level)
    fake.gpio_read = lambda h, pin: chip.read(pin)
    fake.gpio_write = lambda h, pin, level: chip.write(pin, level)
    freed = []
    fake.gpio_free = lambda h, pin: freed.append(pin)
    fake.gpiochip_close = lambda h: freed.append("chip")
    monkeypatch.setitem(sys.modules, "lgpio", fake)
    monkeypatch.setattr(gpio_mod.os.path, "exists", lambda p: p == "/dev/gpiochip0")
    cell = HX711.open("ws-A1", data_pin=DOUT, clock_pin=SCK)
    assert cell.read(0.5) == 8_388_607 and cell.read(0.5) == 0x42
    cell.close()
    assert freed == [DOUT, SCK, "chip"]


# --------------------------------------------------------------------------- serial scales


@pytest.mark.parametrize("line, grams, stable", [
    ("ST,GS,+  1234.5 g", 1234.5, True),  # A&D / CAS, stable gross
    ("US,GS,+  1230.0 g", 1230.0, False),  # unstable
    ("ST,NT,-    12.0 g", -12.0, True),  # net, negative
    ("ST,GS,+0001.234kg", 1234.0, True),  # kilograms glued to the number
    ("ST,GS,01,+00123.4 g", 123.4, True),  # with a device number field
    ("S S      100.00 g", 100.0, True),  # MT-SICS SI reply, stable
    ("S D      100.01 g", 100.01, False),  # MT-SICS, dynamic
    ("N     +    123.45 g  ", 123.45, None),  # Sartorius SBI
    ("G     -      1.20 kg", -1200.0, None),
    ("     123.45 g ?", 123.45, False),  # Ohaus: ? marks unstable
    ("   12.34 g  N", 12.34, None),
    ("Net:   123.4 g", 123.4, None),
    ("  1.5 lb", 680.388555, None),
    ("  3.25 oz", 92.135950, None),
    ("12,5 g", 12.5, None),  # decimal comma
    ("\x02  0.250 kg\x03", 250.0, None),  # STX / ETX framing
    ("1234.5", 1234.5, None),  # a bare number
    ("-0.7", -0.7, None),
    (b"ST,GS,+  0500.0 g\r\n", 500.0, True),  # bytes straight from the port
])
def test_serial_scale_lines(line, grams, stable):
    got = parse_scale_line(line)
    assert got is not None and got.status == "ok"
    assert got.grams == pytest.approx(grams, abs=1e-6) and got.stable is stable


@pytest.mark.parametrize("line, status", [
    ("OL,GS,+9999999 g", "overload"), ("OL,+99999999E+19", "overload"), ("S +", "overload"), ("---OL---", "overload"),
    ("S -", "underload"), ("Low", "underload"),
    ("S I", "error"), ("ES", "error"), ("QT,+00000123 PC", "error"), ("  12 pcs", "error"),
])
def test_serial_scale_status_lines(line, status):
    got = parse_scale_line(line)
    assert got is not None and got.status == status and got.grams is None


@pytest.mark.parametrize("line", ["", "   ", "SI", "KERN PCB 1000-2", "LOW BAT 12.0", "Battery low", "g"])
def test_serial_scale_lines_without_a_weight_are_ignored(line):
    assert parse_scale_line(line) is None


def loop_scale(**kw) -> SerialScale:
    return SerialScale("ws-C1", "loop://", 9600, **kw)


def test_serial_scale_reads_a_continuous_stream_over_a_real_port():
    scale = loop_scale()
    port = scale._port
    port.write(b"KERN PCB 1000-2\r\nST,GS,+  1234.5 g\r\nUS,GS,+  1236.0 g\r\nOL,GS,+9999999 g\r\nES\r\n")
    assert scale.ready()
    assert scale.read(0.5) == 1234.5 and scale.read(0.5) == 1236.0
    assert scale.read(0.5) == math.inf  # overload: the node counts it as saturated
    with pytest.raises(SensorReadError, match=r"ws-C1 \(serial scale on loop:// at 9600 Bd\).*'ES'"):
        scale.read(0.5)
    assert scale.ignored_lines == 1
    with pytest.raises(SensorTimeout, match="no weight line"):
        scale.read(0.05)
    port.write(b"  1.20")  # half a line is not a reading yet
    assert not scale.ready()
    port.write(b"5 kg\n")
    assert scale.read(0.5) == pytest.approx(1205.0)
    scale.close()


def test_serial_scale_asks_for_each_reading_when_given_a_request():
    scale = loop_scale(request="SI")
    assert not scale.ready()  # sends "SI\r\n" (the loop echoes it: not a weight)
    scale._port.write(b"S S     250.00 g\r\n")
    assert scale.read(0.5) == 250.0
    with pytest.raises(SensorTimeout):
        scale.read(0.05)  # asked again, nobody answered
    assert scale.ignored_lines >= 2  # the echoed requests


def test_serial_scale_missing_port_is_one_clear_error():
    with pytest.raises(LoadCellError, match=r"weight sensor ws-C1 \(serial scale on /dev/ttyNOPE9 at 9600 Bd\): "
                                            r"cannot open the port"):
        SerialScale("ws-C1", "/dev/ttyNOPE9")


def test_serial_scale_that_disappears_times_out_and_is_reopened(monkeypatch):
    scale = loop_scale()

    class Gone:
        in_waiting = property(lambda self: (_ for _ in ()).throw(OSError(5, "Input/output error")))

        def close(self):
            pass

    scale._port = Gone()
    with pytest.raises(SensorTimeout, match="port lost"):
        scale.read(0.05)
    with pytest.raises(SensorTimeout, match="port not available"):
        scale.read(0.05)
    monkeypatch.setattr("storesense.edge.shelf.loadcells.serial_scale.time.monotonic", lambda: 1e12)
    assert scale.ready() is False  # reopened (loop://), nothing waiting yet
    assert scale._port is not None
    scale._port.write(b"1.0\n")
    assert scale.read(0.5) == 1.0
