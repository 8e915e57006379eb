"""HX711 24-bit load-cell amplifier, bit-banged on two GPIO lines.

The protocol (Avia Semiconductor HX711 datasheet):

- DOUT is high while a conversion is in progress and goes low when one is ready
  (10 or 80 per second, set by the RATE pin).
- Each of 24 PD_SCK pulses shifts out one bit, most significant first; the value
  is 24-bit two's complement. Out-of-range inputs saturate at ``0x7FFFFF`` and
  ``0x800000``.
- 1, 2 or 3 further pulses choose the input and gain of the *next* conversion:
  1 = channel A gain 128, 2 = channel B gain 32, 3 = channel A gain 64. The 25th
  pulse also pulls DOUT high again until the next conversion is ready.
- PD_SCK held high for more than 60 µs powers the chip down; bringing it low
  powers it up reset to channel A, gain 128.

Bit-banging from Python is fast enough (a GPIO write takes a few µs with lgpio
or RPi.GPIO) as long as nothing else runs Python in the same process while a
frame is clocked out; the shelf node reads every cell from one thread. A frame
after which DOUT is still low was not clocked out as the chip expected, and is
reported as a :class:`~.base.SensorReadError` instead of a reading.
"""

from __future__ import annotations

import time

from .base import LoadCell, LoadCellError, SensorReadError, SensorTimeout
from .gpio import GpioLines, open_gpio

#: Extra PD_SCK pulses after the 24 data bits for each gain.
GAIN_PULSES = {128: 1, 32: 2, 64: 3}
#: The two saturation codes, as signed values.
HX711_MAX = 0x7FFFFF
HX711_MIN = -0x800000
#: PD_SCK high for longer than this powers the chip down (datasheet: 60 µs).
POWER_DOWN_S = 100e-6
#: How long to sleep between DOUT polls while waiting for a conversion.
POLL_S = 0.0005


def twos_complement_24(value: int) -> int:
    """Interpret a 24-bit unsigned frame as a signed two's complement number."""
    if not 0 <= value <= 0xFFFFFF:
        raise ValueError(f"not a 24-bit value: {value:#x}")
    return value - (1 << 24) if value & 0x800000 else value


class HX711(LoadCell):
    """One HX711 on ``data_pin`` (DOUT) and ``clock_pin`` (PD_SCK) of ``gpio``.

    ``gpio`` is a :class:`~.gpio.GpioLines`; :meth:`open` builds one from the
    installed GPIO library. :meth:`read` waits for DOUT to go low, clocks out one
    frame and sets the gain for the next one. The first conversion after power-up
    is always channel A at gain 128, so with another gain it is read and dropped.
    """

    unit = "counts"

    def __init__(self, name: str, gpio: GpioLines, data_pin: int, clock_pin: int, gain: int = 128):
        if gain not in GAIN_PULSES:
            raise LoadCellError(f"{name}: HX711 gain must be 128, 64 or 32, got {gain}")
        self.name = name
        self.data_pin = data_pin
        self.clock_pin = clock_pin
        self.gain = gain
        self._gpio: GpioLines | None = gpio
        self._pulses = GAIN_PULSES[gain]
        self._gain_pending = gain != 128
        try:
            gpio.claim_input(data_pin)
            gpio.claim_output(clock_pin, 0)
        except Exception as exc:  # noqa: BLE001 - each GPIO library has its own errors
            gpio.close()
            self._gpio = None
            raise LoadCellError(f"{self.describe()}: cannot claim the pins: {exc}") from None
        self.reset()

    @classmethod
    def open(cls, name: str, data_pin: int, clock_pin: int, gain: int = 128, chip: int = 0) -> HX711:
        """Open an HX711 through the first installed GPIO library (see :func:`~.gpio.open_gpio`)."""
        who = f"weight sensor {name} (HX711, DOUT GPIO{data_pin}, PD_SCK GPIO{clock_pin})"
        return cls(name, open_gpio(who, chip), data_pin, clock_pin, gain)

    def describe(self) -> str:
        """``weight sensor NAME (HX711, DOUT GPIOn, PD_SCK GPIOm)``."""
        return f"weight sensor {self.name} (HX711, DOUT GPIO{self.data_pin}, PD_SCK GPIO{self.clock_pin})"

    def _lines(self) -> GpioLines:
        if self._gpio is None:
            raise LoadCellError(f"{self.describe()}: already closed")
        return self._gpio

    def reset(self) -> None:
        """Power the chip down and up again: it restarts at channel A, gain 128."""
        gpio = self._lines()
        gpio.write(self.clock_pin, 1)
        time.sleep(POWER_DOWN_S)
        gpio.write(self.clock_pin, 0)
        self._gain_pending = self.gain != 128

    def ready(self) -> bool:
        """True when a conversion is waiting (DOUT low)."""
        return self._lines().read(self.data_pin) == 0

    def _wait_ready(self, deadline: float) -> None:
        while not self.ready():
            if time.monotonic() >= deadline:
                raise SensorTimeout(f"{self.describe()}: no conversion ready in time (DOUT stayed high)")
            time.sleep(POLL_S)

    def read_frame(self) -> int:
        """Clock out one ready frame (24 bits, then the gain pulses); the unsigned 24-bit value."""
        gpio = self._lines()
        data, clock = self.data_pin, self.clock_pin
        value = 0
        for _ in range(24):
            gpio.write(clock, 1)
            gpio.write(clock, 0)
            value = (value << 1) | (gpio.read(data) & 1)
        for _ in range(self._pulses):
            gpio.write(clock, 1)
            gpio.write(clock, 0)
        if gpio.read(data) == 0:
            raise SensorReadError(
                f"{self.describe()}: DOUT still low after the frame (clocking too slow or a wiring fault); "
                f"frame {value:#08x} dropped"
            )
        return value

    def read(self, timeout_s: float = 1.0) -> float:
        """The next conversion as signed counts (``-0x800000`` .. ``0x7FFFFF``)."""
        deadline = time.monotonic() + timeout_s
        self._wait_ready(deadline)
        if self._gain_pending:
            self.read_frame()  # converted at gain 128; the next one has our gain
            self._gain_pending = False
            self._wait_ready(deadline)
        return float(twos_complement_24(self.read_frame()))

    def close(self) -> None:
        """Power the chip down and release the pins."""
        if self._gpio is None:
            return
        try:
            self._gpio.write(self.clock_pin, 1)
        finally:
            self._gpio.close()
            self._gpio = None
