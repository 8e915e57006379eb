"""The one interface every load-cell back-end implements, and its errors.

A back-end hands out *raw* readings: ADC counts for an HX711, grams for a
serial scale, whatever was recorded for a replayed stream. Turning them into
grams (tare, scale factor) and deciding whether they can be trusted is the
shelf node's job (:mod:`storesense.edge.shelf.node`), so that every back-end is
treated alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ....errors import StoresenseError


class LoadCellError(StoresenseError):
    """A load cell cannot be opened (missing library, device or port)."""


class SensorTimeout(LoadCellError):
    """A load cell gave no reading within the time allowed."""


class SensorReadError(LoadCellError):
    """A load cell answered, but with a reading that is not a reading (bad frame, garbled line)."""


class LoadCell(ABC):
    """One load cell (or scale) the shelf node reads.

    ``name`` is the weight sensor's id from the store config; ``unit`` is what
    :meth:`read` returns: ``"counts"`` (an ADC, converted with the sensor's
    ``counts_per_g`` and zero offset) or ``"g"`` (a scale that weighs itself).
    """

    name: str
    unit: str = "counts"

    def ready(self) -> bool:
        """True when :meth:`read` would return at once (a conversion or a line is waiting)."""
        return True

    @abstractmethod
    def read(self, timeout_s: float = 1.0) -> float:
        """Wait at most ``timeout_s`` for the next reading and return it.

        Raises :class:`SensorTimeout` when none comes in time and
        :class:`SensorReadError` when what came is not a reading. Saturated or
        overloaded readings are returned as they are (the node judges them).
        """

    def close(self) -> None:
        """Release the pins or the port (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        """One line saying what this cell is and how it is connected (for messages)."""
        return self.name
