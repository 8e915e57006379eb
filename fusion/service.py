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
- the input journal (``journal=PATH``, :mod:`.journal`): every live input
  message and every flush is journaled before the node takes it, and a start
  with an existing journal rebuilds the node from it (same run id, the same
  outputs with the same event ids) before it carries on: a crash or a restart
  loses no session, track or cart;

and closes them all on :meth:`~FusionService.close` (or leaving a ``with``).

Run ids: a live run gets a fresh random run id at each start unless one is
given (a replay for a test or a regression) or the journal holds one (a
restart carries on the run it interrupted). The node's ids carry the store id
and the run id (:class:`~storesense.fusion.node.FusionNode`).

No input message ends :meth:`~FusionService.serve`: one the node fails on is
counted (``input_errors``) and logged in one line (at most one per 10 s with
the count since), and the loop carries on.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Collection, Iterable

from ..config import StoreConfig
from ..contracts import Envelope
from ..errors import StoresenseError
from ..transport import MqttPublisher, ZmqSubscriber
from ..transport.recording import Recorder, replay
from ..transport.zeromq import CurveKeys
from .journal import InputJournal, JournalState
from .node import FusionNode, run

log = logging.getLogger(__name__)

#: seconds between two log lines about input messages the node failed on
ERROR_LOG_EVERY_S = 10.0


class FusionService:
    """A fusion node with its input and outputs; see the module docstring.

    Outputs, in the order each message reaches them: the MQTT broker at
    ``mqtt_url`` (QoS per contract; ``mqtt_client_id`` fixes the persistent
    session's id), the recording ``output``, then each callable of ``sinks``.
    """

    def __init__(self, config: StoreConfig, *, run_id: str | None = None, mqtt_url: str | None = None,
                 mqtt_client_id: str | None = None, output: str | Path | None = None,
                 sinks: Iterable[Callable[[Envelope], None]] = (), journal: str | Path | None = None,
                 journal_fsync_s: float = 1.0, journal_rotate_entries: int = 50_000):
        self.config = config
        self.mqtt_url = mqtt_url
        self.mqtt_client_id = mqtt_client_id
        self.output = Path(output) if output is not None else None
        self.publisher: MqttPublisher | None = None
        self.recorder: Recorder | None = None
        self.subscriber: ZmqSubscriber | None = None
        self._sinks: list[Callable[[Envelope], None]] = []
        self._extra = list(sinks)
        self.journal: InputJournal | None = None
        self._resume: JournalState | None = None
        if journal is not None:
            self.journal = InputJournal(journal, config.store.id, fsync_s=journal_fsync_s,
                                        rotate_entries=journal_rotate_entries)
            self._resume = self.journal.read()
            if self._resume is not None and run_id is not None and run_id != self._resume.run_id:
                raise StoresenseError(f"{self.journal.path}: the journal carries on run {self._resume.run_id!r}, "
                                      f"not {run_id!r}: drop --run-id, or remove the journal to start afresh")
        #: the run id: given, carried on from the journal, or fresh
        self.run_id = self._resume.run_id if self._resume else (run_id if run_id is not None else uuid.uuid4().hex)
        node_run = self._resume.node_run_id if self._resume else self.run_id
        self.node = FusionNode(config, self._emit, run_id=node_run)
        self.handled = 0  # live messages handed to the node by serve()
        self.recovered = 0  # journal entries replayed at start
        self.error: BaseException | None = None  # what ended serve_in_thread()'s loop, if it failed
        self._past: Counter[str] = Counter()  # counters of the nodes of earlier journal epochs
        self._errors_logged = (-float("inf"), 0)  # (when last logged, failures not logged since)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    @property
    def counters(self) -> Counter[str]:
        """The node's counters (``in.<type>``, ``out.<type>``, ``late_dropped``, ``input_errors``), all epochs."""
        return self._past + self.node.counters if self._past else self.node.counters

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
                # journaled: a restart adds to the recording (re-emitted messages keep their event ids)
                self.recorder = Recorder(self.output, self.config.store.id, append=self.journal is not None)
                self._sinks.append(self.recorder.write)
            self._sinks.extend(self._extra)
            if self.journal is not None:
                self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def _recover(self) -> None:
        """Rebuild the node from the journal (when there is one) and open it for appending."""
        assert self.journal is not None
        state = self._resume
        if state is None:
            self.journal.open(self.run_id)
            return
        t0 = time.monotonic()
        for entry in state.entries:
            if entry is None:
                self._guarded(self.node.flush, None)
            else:
                self._guarded(self.node.handle, entry)
        self.recovered = len(state.entries)
        self.journal.open(state.run_id, state.epoch, entries=len(state.entries))
        open_sessions = len(self.node.identity.open_sessions)
        log.warning("fusion: carried on run %s (epoch %d) from %s: %d journal entries replayed in %.1f s, "
                    "%d open session(s), %d track(s)%s", state.run_id, state.epoch, self.journal.path,
                    len(state.entries), time.monotonic() - t0, open_sessions, len(self.node.tracker.tracks),
                    f", {state.torn} torn line(s) skipped" if state.torn else "")
        self._resume = None

    def flush_output(self, timeout: float = 10.0) -> bool:
        """Wait until the broker has acknowledged every message published; False on timeout."""
        return self.publisher.flush(timeout) if self.publisher is not None else True

    # ------------------------------------------------------------------ inputs

    def run(self, source: Iterable[Envelope]) -> None:
        """Fuse every message of ``source`` (a recording, the simulator, any iterable), then flush.

        With a journal each message is journaled first, as live input is.
        """
        if self.journal is None:
            run(self.node, source)
            return
        for msg in source:
            self.handle(msg)
        self.flush()

    def run_recording(self, path: str | Path, speed: float | None = None) -> None:
        """Fuse a recording, at ``speed`` times its recorded pace (None: as fast as possible)."""
        self.run(replay(path, speed=speed))

    def listen(self, endpoint: str, *, bind: bool = True, curve: CurveKeys | None = None,
               sources: Callable[[str | None], Collection[str] | None] | None = None) -> str:
        """Open the live input: a ZeroMQ SUB socket on ``endpoint`` (with ``curve``: encrypted, accepting
        only the listed edge nodes' keys, each sending only as the ``sources`` its node may use);
        returns the real endpoint."""
        self.subscriber = ZmqSubscriber(endpoint, bind=bind, curve=curve, sources=sources)
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
        paused). A message the node fails on is counted and logged, and the loop
        goes on; KeyboardInterrupt (and what is not an ``Exception``) ends it unflushed.
        """
        assert self.subscriber is not None, "listen() first"
        while not self._stop.is_set() and (until is None or self.handled < until):
            msg = self.subscriber.recv(poll_s)
            if msg is not None:
                self.handle(msg)
                self.handled += 1
            elif self.subscriber.timed_out:
                self.flush()  # input paused: release what the reorder window holds
        self.flush()  # the end of the stream

    def handle(self, msg: Envelope) -> None:
        """Take one live input message: journal it, then fuse it (a failure is counted and logged)."""
        if self.journal is not None:
            self.journal.message(msg)
        self._guarded(self.node.handle, msg)

    def flush(self) -> None:
        """Flush the node (the live input paused): journaled, and the journal rotates when the store is empty."""
        if self.journal is not None:
            self.journal.flush()
        self._guarded(self.node.flush, None)
        if (self.journal is not None and self.journal.entries >= self.journal.rotate_entries
                and store_empty(self.node)):
            self._past += self.node.counters
            run_id = self.journal.rotate()
            self.node = FusionNode(self.config, self._emit, run_id=run_id)
            log.info("fusion: the store is empty: journal %s rotated, epoch %d (run id %s)",
                     self.journal.path, self.journal.epoch, run_id)

    def _guarded(self, call: Callable, msg: Envelope | None) -> None:
        """``call(msg)`` (or ``call()`` for a flush); an exception is counted and logged, never raised."""
        try:
            call() if msg is None else call(msg)
        except Exception as exc:  # noqa: BLE001 - no input may end the node
            self.node.counters["input_errors"] += 1
            last, quiet = self._errors_logged
            now = time.monotonic()
            if now - last < ERROR_LOG_EVERY_S:
                self._errors_logged = (last, quiet + 1)
                return
            self._errors_logged = (now, 0)
            what = "the flush" if msg is None else f"{msg.type} {msg.event_id} from {msg.source}"  # type: ignore[attr-defined]
            more = f" ({quiet} more failure(s) not logged)" if quiet else ""
            log.error("fusion: failed on %s, skipped it: %s: %s%s", what, type(exc).__name__, exc, more)

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
        """Close the live input, the journal, the recording and the publisher (which flushes first); idempotent."""
        if self.subscriber is not None:
            self.subscriber.close()
        if self.journal is not None:
            if self.journal.is_open and self.journal.entries and store_empty(self.node):
                self.journal.rotate()  # nothing to carry on: the next start need not replay this epoch
            self.journal.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.publisher is not None:
            self.publisher.close()

    def __enter__(self) -> FusionService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def store_empty(node: FusionNode) -> bool:
    """Nobody in the store as the node sees it: no open session, waiting check-in or held message.

    Called at a pause of the live input (no message for the poll time: no camera sees anyone), so
    floor tracks left then are those of shoppers who left or of false positives with no session.
    """
    return (not len(node.reorder) and node._frame is None and not node._pending_checkins
            and not node.identity.pending and not node.identity.open_sessions)
