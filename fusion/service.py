"""Running the fusion node: its input, its outputs, the live loop and shutdown.

:class:`FusionService` is what ``storesense fusion``, the demo and the fusion
benchmark run (as :class:`~storesense.hub.service.HubService` is for the hub).
It owns a :class:`~storesense.fusion.node.FusionNode` and wires

- the input: a recording (:meth:`~FusionService.run_recording`, at recorded
  pace or as fast as possible), any iterable of messages
  (:meth:`~FusionService.run`), or the live edge stream on a ZeroMQ SUB socket
  (:meth:`~FusionService.listen`, then :meth:`~FusionService.serve`, in this
  thread or in its own with :meth:`~FusionService.serve_in_thread`): while
  the live input pauses, the node is flushed so that what its reorder window
  holds is not kept waiting for messages that may never come;
- the outputs: an MQTT publisher, a recording, and any further callables, each
  given every message the node emits;

and closes them all on :meth:`~FusionService.close` (or leaving a ``with``).
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

from ..config import StoreConfig
from ..contracts import Envelope
from ..transport import MqttPublisher, ZmqSubscriber
from ..transport.recording import Recorder, replay
from .node import FusionNode, run


class FusionService:
    """A fusion node with its input and outputs; see the module docstring.

    Outputs, in the order each message reaches them: the MQTT broker at
    ``mqtt_url`` (QoS per contract; ``mqtt_client_id`` fixes the persistent
    session's id), the recording ``output``, then each callable of ``sinks``.
    """

    def __init__(self, config: StoreConfig, *, run_id: str | None = "fusion", mqtt_url: str | None = None,
                 mqtt_client_id: str | None = None, output: str | Path | None = None,
                 sinks: Iterable[Callable[[Envelope], None]] = ()):
        self.config = config
        self.mqtt_url = mqtt_url
        self.mqtt_client_id = mqtt_client_id
        self.output = Path(output) if output is not None else None
        self.publisher: MqttPublisher | None = None
        self.recorder: Recorder | None = None
        self.subscriber: ZmqSubscriber | None = None
        self._sinks: list[Callable[[Envelope], None]] = []
        self._extra = list(sinks)
        self.node = FusionNode(config, self._emit, run_id=run_id)
        self.handled = 0  # live messages handed to the node by serve()
        self.error: BaseException | None = None  # what ended serve_in_thread()'s loop, if it failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    @property
    def counters(self) -> Counter[str]:
        """The node's counters (``in.<type>``, ``out.<type>``, ``late_dropped``)."""
        return self.node.counters

    def _emit(self, msg: Envelope) -> None:
        for sink in self._sinks:
            sink(msg)

    # ------------------------------------------------------------------ outputs

    def start(self) -> FusionService:
        """Connect to the broker and open the recording (whichever were given); once."""
        if self._started:
            return self
        self._started = True
        try:
            if self.mqtt_url:
                self.publisher = MqttPublisher(self.mqtt_url, store=self.config.store.id, node="fusion",
                                               kind="fusion", client_id=self.mqtt_client_id)
                self.publisher.connect()
                self._sinks.append(self.publisher.publish)
            if self.output is not None:
                self.recorder = Recorder(self.output, self.config.store.id)
                self._sinks.append(self.recorder.write)
        except BaseException:
            self.close()
            raise
        self._sinks.extend(self._extra)
        return self

    def flush_output(self, timeout: float = 10.0) -> bool:
        """Wait until the broker has acknowledged every message published; False on timeout."""
        return self.publisher.flush(timeout) if self.publisher is not None else True

    # ------------------------------------------------------------------ inputs

    def run(self, source: Iterable[Envelope]) -> None:
        """Fuse every message of ``source`` (a recording, the simulator, any iterable), then flush."""
        run(self.node, source)

    def run_recording(self, path: str | Path, speed: float | None = None) -> None:
        """Fuse a recording, at ``speed`` times its recorded pace (None: as fast as possible)."""
        self.run(replay(path, speed=speed))

    def listen(self, endpoint: str, *, bind: bool = True) -> str:
        """Open the live input: a ZeroMQ SUB socket on ``endpoint``; returns the real endpoint."""
        self.subscriber = ZmqSubscriber(endpoint, bind=bind)
        return self.subscriber.endpoint

    @staticmethod
    def freeze_startup_state() -> None:
        """Exempt everything made so far from the garbage collector's full scans.

        What is made at start-up (config, floor grids, modules) lives as long as
        the node: scanning it again on every full collection is a pause that
        would land on whatever message is being fused at that moment.
        """
        gc.collect()
        gc.freeze()

    def serve(self, *, poll_s: float = 1.0, until: int | None = None) -> None:
        """Fuse the live input until :meth:`stop` (or ``until`` messages), then flush.

        A poll of ``poll_s`` seconds with no message flushes the node (the input
        paused). An exception (KeyboardInterrupt included) ends the loop unflushed.
        """
        assert self.subscriber is not None, "listen() first"
        while not self._stop.is_set() and (until is None or self.handled < until):
            msg = self.subscriber.recv(poll_s)
            if msg is not None:
                self.node.handle(msg)
                self.handled += 1
            else:
                self.node.flush()  # input paused: release what the reorder window holds
        self.node.flush()  # the end of the stream

    def serve_in_thread(self, *, poll_s: float = 1.0, until: int | None = None) -> threading.Thread:
        """Run :meth:`serve` in a daemon thread; a failure is kept in :attr:`error`."""

        def loop() -> None:
            try:
                self.serve(poll_s=poll_s, until=until)
            except BaseException as exc:  # reported by whoever waits for the thread
                self.error = exc

        self._thread = threading.Thread(target=loop, name="fusion", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 2.0) -> None:
        """Ask :meth:`serve` to end, and wait up to ``timeout`` s for its thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Close the live input, the recording and the publisher (which flushes first); idempotent."""
        if self.subscriber is not None:
            self.subscriber.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.publisher is not None:
            self.publisher.close()

    def __enter__(self) -> FusionService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
