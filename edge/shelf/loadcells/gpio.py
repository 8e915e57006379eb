"""A tiny GPIO abstraction for bit-banged sensors, over lgpio, RPi.GPIO or gpiozero.

:class:`GpioLines` is all a bit-banging driver needs: claim a pin as input or
output, read a level, write a level. :func:`open_gpio` picks the first library
that is installed (lgpio, which also works on a Raspberry Pi 5; then RPi.GPIO;
then gpiozero, the slowest) and imports it only then, so nothing here is needed
on a machine without GPIO. A missing device node or library raises one
:class:`~storesense.edge.shelf.loadcells.base.LoadCellError` saying what is missing.
Pins are BCM numbers.
"""

from __future__ import annotations

import importlib
import os
from typing import Protocol

from .base import LoadCellError

#: Libraries tried in this order; the package name to install is the same.
GPIO_LIBRARIES = ("lgpio", "RPi.GPIO", "gpiozero")


class GpioLines(Protocol):
    """Digital lines of one GPIO controller (BCM numbering)."""

    def claim_input(self, pin: int) -> None:
        """Use ``pin`` as an input (no pull resistor)."""

    def claim_output(self, pin: int, level: int) -> None:
        """Use ``pin`` as an output, starting at ``level`` (0 or 1)."""

    def read(self, pin: int) -> int:
        """The level of ``pin``: 0 or 1."""

    def write(self, pin: int, level: int) -> None:
        """Drive ``pin`` to ``level`` (0 or 1)."""

    def close(self) -> None:
        """Release every claimed pin."""


class LgpioLines:
    """GPIO lines through lgpio (``/dev/gpiochipN``)."""

    def __init__(self, lgpio, chip: int):
        self._lg = lgpio
        self._handle = lgpio.gpiochip_open(chip)
        self._pins: list[int] = []

    def claim_input(self, pin: int) -> None:
        """Use ``pin`` as an input."""
        self._lg.gpio_claim_input(self._handle, pin)
        self._pins.append(pin)

    def claim_output(self, pin: int, level: int) -> None:
        """Use ``pin`` as an output at ``level``."""
        self._lg.gpio_claim_output(self._handle, pin, level)
        self._pins.append(pin)

    def read(self, pin: int) -> int:
        """The level of ``pin``."""
        return self._lg.gpio_read(self._handle, pin)

    def write(self, pin: int, level: int) -> None:
        """Drive ``pin`` to ``level``."""
        self._lg.gpio_write(self._handle, pin, level)

    def close(self) -> None:
        """Free the pins and close the chip."""
        if self._handle is None:
            return
        for pin in self._pins:
            try:
                self._lg.gpio_free(self._handle, pin)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        self._lg.gpiochip_close(self._handle)
        self._handle = None


class RpiGpioLines:
    """GPIO lines through RPi.GPIO (``/dev/gpiomem``)."""

    def __init__(self, gpio):
        self._gpio = gpio
        gpio.setwarnings(False)
        gpio.setmode(gpio.BCM)
        self._pins: list[int] = []

    def claim_input(self, pin: int) -> None:
        """Use ``pin`` as an input."""
        self._gpio.setup(pin, self._gpio.IN)
        self._pins.append(pin)

    def claim_output(self, pin: int, level: int) -> None:
        """Use ``pin`` as an output at ``level``."""
        self._gpio.setup(pin, self._gpio.OUT, initial=level)
        self._pins.append(pin)

    def read(self, pin: int) -> int:
        """The level of ``pin``."""
        return int(self._gpio.input(pin))

    def write(self, pin: int, level: int) -> None:
        """Drive ``pin`` to ``level``."""
        self._gpio.output(pin, level)

    def close(self) -> None:
        """Reset the claimed pins to inputs."""
        if self._pins:
            self._gpio.cleanup(self._pins)
            self._pins = []


class GpiozeroLines:
    """GPIO lines through gpiozero devices (slowest; used when nothing else is installed)."""

    def __init__(self, gpiozero):
        self._gz = gpiozero
        self._devices: dict[int, object] = {}

    def claim_input(self, pin: int) -> None:
        """Use ``pin`` as an input."""
        self._devices[pin] = self._gz.DigitalInputDevice(pin, pull_up=None, active_state=True)

    def claim_output(self, pin: int, level: int) -> None:
        """Use ``pin`` as an output at ``level``."""
        self._devices[pin] = self._gz.DigitalOutputDevice(pin, initial_value=bool(level))

    def read(self, pin: int) -> int:
        """The level of ``pin``."""
        return int(self._devices[pin].value)

    def write(self, pin: int, level: int) -> None:
        """Drive ``pin`` to ``level``."""
        self._devices[pin].value = bool(level)

    def close(self) -> None:
        """Close every device."""
        for dev in self._devices.values():
            dev.close()
        self._devices = {}


def gpio_device_paths(chip: int) -> tuple[str, str]:
    """The device nodes a GPIO library needs: ``/dev/gpiochipN`` (lgpio, gpiozero) and ``/dev/gpiomem`` (RPi.GPIO)."""
    return f"/dev/gpiochip{chip}", "/dev/gpiomem"


def open_gpio(who: str, chip: int = 0) -> GpioLines:
    """Open the GPIO controller for sensor ``who`` with the first installed library.

    Raises :class:`LoadCellError` naming ``who`` and everything that is missing
    (the device nodes, the libraries) or the library's own complaint.
    """
    chip_dev, mem_dev = gpio_device_paths(chip)
    has_chip, has_mem = os.path.exists(chip_dev), os.path.exists(mem_dev)
    missing = []
    if not (has_chip or has_mem):
        missing.append(f"{chip_dev} and {mem_dev} do not exist (not a Raspberry Pi, or GPIO is not enabled)")
    modules = {}
    for name in GPIO_LIBRARIES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            continue
        except Exception as exc:  # noqa: BLE001 - RPi.GPIO raises RuntimeError off a Pi
            missing.append(f"{name} cannot load: {exc}")
    if not modules:
        missing.append("no GPIO library is installed (pip install lgpio; or RPi.GPIO or gpiozero)")
    if missing:
        raise LoadCellError(f"{who}: cannot open GPIO: " + "; ".join(missing))
    errors = []
    for name, module in modules.items():
        if name == "lgpio" and not has_chip:
            errors.append(f"lgpio: {chip_dev} does not exist")
            continue
        if name == "RPi.GPIO" and not has_mem:
            errors.append(f"RPi.GPIO: {mem_dev} does not exist")
            continue
        try:
            if name == "lgpio":
                return LgpioLines(module, chip)
            if name == "RPi.GPIO":
                return RpiGpioLines(module)
            return GpiozeroLines(module)
        except Exception as exc:  # noqa: BLE001 - each library has its own error types
            errors.append(f"{name}: {exc}")
    raise LoadCellError(f"{who}: cannot open GPIO: " + "; ".join(errors))
