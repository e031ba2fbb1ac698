"""The trainer's input thread: polls `labeled`, cuts batches (by count, or by the
longest wait), encodes them, and hands them over through a short queue, so a
step never waits for input that has arrived.

The thread owns the reader (a Kafka consumer is not thread-safe) and the cutter;
the training thread only takes batches. An error in the thread is raised in the
training thread by the next `take`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from deploy.apps.train.cutter import Cut, Cutter
from model.errors import FeatureError
from model.features import EncodedBatch, FeatureEncoder, FeatureSchema, infer_schema
from stream.errors import RecordError
from stream.kafka.labeled_reader import LabeledRecord

_POLL_MS = 100
_PROBE_S = 5.0
log = logging.getLogger(__name__)


class Reader(Protocol):
    """`labeled`'s records from the resume point (`LabeledReader`)."""

    def poll(self, timeout_ms: int) -> list[LabeledRecord]: ...
    def lag(self) -> dict[int, int]: ...
    def reachable(self) -> bool: ...


@dataclass
class Batch:
    """A cut and its encoding (None when every event in it was dead-lettered)."""

    cut: Cut
    encoded: EncodedBatch | None
    labels: np.ndarray


class Feed:
    def __init__(
        self,
        reader: Reader,
        cutter: Cutter,
        schema: FeatureSchema | None,
        batch_size: int,
        max_wait_s: float,
        clock: Callable[[], float],
        depth: int = 4,
    ) -> None:
        """`schema` None: inferred from the first batch (then recorded by the trainer)."""
        self._reader = reader
        self._cutter = cutter
        self.encoder = FeatureEncoder(schema) if schema is not None else None
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._queue: queue.Queue[Batch] = queue.Queue(depth)
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fmstream-train-feed", daemon=True)
        self.lag: dict[int, int] = {}
        self.connected = True
        self._heard = self._probed = clock()

    def start(self) -> None:
        self._thread.start()

    def take(self, timeout_s: float) -> Batch | None:
        """The next batch, or None if none came within `timeout_s`."""
        try:
            return self._queue.get(timeout=timeout_s)
        except queue.Empty:
            failure = self._failure
        if failure is not None:
            raise failure
        return None

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # handed to the training thread
            self._failure = exc

    def _loop(self) -> None:
        cutter, waiting_since = self._cutter, None
        while not self._stopping.is_set():
            records = self._reader.poll(_POLL_MS)
            for record in records:
                cutter.add(record)
            self.lag = self._reader.lag()
            self._watch_connection(bool(records))
            if cutter.holds_entries and waiting_since is None:
                waiting_since = self._clock()
            while cutter.pending >= self._batch_size:
                self._put(cutter.cut(self._batch_size))
                waiting_since = self._clock() if cutter.holds_entries else None
            if waiting_since is not None and self._clock() - waiting_since >= self._max_wait_s:
                self._put(cutter.cut(self._batch_size))
                waiting_since = self._clock() if cutter.holds_entries else None

    def _watch_connection(self, heard: bool) -> None:
        """Logs once when the broker goes away and once when it is back: the consumer
        waits it out, reconnecting with backoff, and the trainer trains what it has.
        Records arriving say it is there; after `_PROBE_S` without any, a metadata
        request asks (one every `_PROBE_S`)."""
        now = self._clock()
        if heard:
            self._heard = now
            connected = True
        elif now - self._heard >= _PROBE_S and now - self._probed >= _PROBE_S:
            self._probed = now
            connected = self._reader.reachable()
        else:
            return
        if connected != self.connected:
            self.connected = connected
            if connected:
                log.info("broker_reachable: reading labeled again")
            else:
                log.warning("broker_unreachable: waiting for it (training goes on with what came)")

    def _put(self, cut: Cut) -> None:
        batch = self._encode(cut)
        while not self._stopping.is_set():
            try:
                self._queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def _encode(self, cut: Cut) -> Batch:
        if self.encoder is None and cut.events:
            self.encoder = FeatureEncoder(infer_schema([e.features for e in cut.events]))
        if self.encoder is None or not cut.events:
            return Batch(cut, None, np.zeros(0, np.float32))
        encoded: EncodedBatch | None
        try:
            encoded = self.encoder.encode([e.features for e in cut.events])
        except FeatureError:
            encoded = self._encode_valid(cut, self.encoder)
        labels = np.fromiter((e.label for e in cut.events), np.float32, len(cut.events))
        return Batch(cut, encoded, labels)

    def _encode_valid(self, cut: Cut, encoder: FeatureEncoder) -> EncodedBatch | None:
        """Dead-letters the events whose features do not fit the schema, encodes the rest
        (the cut keeps only those)."""
        keep = []
        for i, event in enumerate(cut.events):
            try:
                encoder.encode([event.features])
                keep.append(i)
            except FeatureError as exc:
                error = RecordError("schema_mismatch", str(exc))
                self._cutter.reject(event, cut.sources[i], error)
                cut.dead[error.reason] += 1
        cut.events = [cut.events[i] for i in keep]
        cut.sources = [cut.sources[i] for i in keep]
        return encoder.encode([e.features for e in cut.events]) if keep else None
