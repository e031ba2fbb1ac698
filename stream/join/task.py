"""One partition's join: decode and validate its input records, run the core, and
turn what comes out into numbered output records (labeled, corrections, dead
letters). Labeled events are packed into example batches when the batch's
changelog entry is made: one record per `labeled_batch_max` events (or
`labeled_batch_bytes`), each with its own sequence number, so recovery finds
what landed record by record. Pure: no clients, no clock; the daemon feeds it
and persists it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from stream.errors import RecordError
from stream.events import (
    DAY_MS,
    DEFAULT_MAX_RECORD_BYTES,
    EARLIEST_TS,
    LATEST_TS,
    Impression,
    LabeledEvent,
    decode_input,
    dumps,
    encode_labeled,
    labeled_batch,
)
from stream.join.core import JoinConfig, JoinerCore, LateClick, Output
from stream.join.records import (
    CORRECTIONS,
    DEAD_LETTER,
    LABELED,
    SEQ_HEADER,
    SRC_HEADER,
    Entry,
    InRecord,
    OutRecord,
    Progress,
)


@dataclass(frozen=True)
class TaskConfig:
    join: JoinConfig = field(default_factory=JoinConfig)
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # How far an event time may lie behind the partition's newest event time, or ahead
    # of it or of the record's broker timestamp, before it is dead-lettered.
    max_skew_ms: int = DAY_MS
    labeled_batch_max: int = 2_000  # 1: one plain event per record, keyed by its id
    labeled_batch_bytes: int = 1024 * 1024


class JoinTask:
    def __init__(
        self,
        partition: int,
        config: TaskConfig,
        source_topics: Mapping[str, str],
        progress: Progress | None = None,
    ) -> None:
        self.partition = partition
        self.config = config
        self.core = JoinerCore(config.join, journal=True)
        self._sources = dict(source_topics)
        progress = progress or Progress()
        self.offsets = dict(progress.offsets)
        self.seq = progress.seq
        self.marks = dict(progress.marks)
        self.base = progress.base
        self.consumed: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self._src = str(partition).encode()
        self._labeled: list[LabeledEvent] = []  # joined since the last entry, in order

    def process(self, records: Iterable[InRecord], resumed: bool = False) -> list[OutRecord]:
        """Joins records; a bad one becomes a dead letter. `resumed`: the partition was
        idle before these records, so its event time may jump ahead (a gap in traffic)
        when the first record's broker timestamp agrees with its event time."""
        out: list[OutRecord] = []
        for record in records:
            self.consumed[record.topic] += 1
            self.offsets[record.topic] = record.offset + 1
            try:
                event = decode_input(record.topic, record.value, self.config.max_record_bytes)
                self._check_time(event.ts, record.timestamp, resumed)
            except RecordError as exc:
                out.append(self._dead_letter(record, exc))
                continue
            resumed = False
            if isinstance(event, Impression):
                results = self.core.impression(event)
            else:
                results = self.core.click(event)
            out.extend(self._outputs(results))
        return out

    def advance_to(self, event_ts: int, inputs: Collection[str]) -> list[OutRecord]:
        return self._outputs(self.core.advance_to(event_ts, inputs))

    @property
    def labels_waiting(self) -> int:
        """Labeled events joined since the last entry (written with the next one)."""
        return len(self._labeled)

    @property
    def between_entries(self) -> bool:
        """Whether everything the task holds is in entries already (no state change
        or labeled event waits for the next one): the moment for a checkpoint."""
        return not self.core.unsaved and not self._labeled

    def entry(self, outbox: list[OutRecord]) -> Entry:
        """The changelog entry of everything since the last one: `outbox` (corrections
        and dead letters) and the labeled events joined meanwhile, as batches."""
        outbox = [*outbox, *self._batches()]
        return Entry(self.partition, self.progress(), self.core.take_changes(), outbox)

    def progress(self, base: int | None = None) -> Progress:
        """Where the task stands; `base`: a new checkpoint's offset instead of its own."""
        base = self.base if base is None else base
        return Progress(dict(self.offsets), self.core.event_times, self.seq, dict(self.marks), base)

    def close_idle(self, event_ts: int) -> list[OutRecord]:
        """Closes what an idle partition holds as if event time were `event_ts`, without
        moving its event time (see JoinerCore.close_before)."""
        return self._outputs(self.core.close_before(event_ts))

    def _check_time(self, ts: int, broker_ts: int, resumed: bool) -> None:
        """Event time comes from records alone: a partition's first record sets it. The
        checks stop one record from moving it where the others cannot follow."""
        if not EARLIEST_TS <= ts < LATEST_TS:
            raise RecordError("ts_out_of_range", f"event time {ts} ms is not between 2000 and 2100")
        skew = self.config.max_skew_ms
        stamped = broker_ts >= EARLIEST_TS  # -1: the producer set no timestamp
        if stamped and ts - broker_ts > skew:
            raise RecordError(
                "ts_out_of_range",
                f"event time {ts} ms is {ts - broker_ts} ms after the record's broker "
                f"timestamp {broker_ts} (limit {skew}): a clock or unit error",
            )
        newest = self.core.newest
        if newest is None:
            return
        if newest - ts > skew:
            raise RecordError(
                "ts_out_of_range",
                f"event time {ts} ms is {newest - ts} ms older than the partition's newest "
                f"event time {newest} (limit {skew}): too old to join",
            )
        if ts - newest > skew and not (resumed and stamped and abs(ts - broker_ts) <= skew):
            raise RecordError(
                "ts_out_of_range",
                f"event time {ts} ms is {ts - newest} ms ahead of the partition's newest "
                f"event time {newest} (limit {skew})",
            )

    def _next(self) -> tuple[int, tuple[tuple[str, bytes], ...]]:
        seq = self.seq
        self.seq += 1
        return seq, ((SRC_HEADER, self._src), (SEQ_HEADER, str(seq).encode()))

    def _outputs(self, results: Iterable[Output]) -> list[OutRecord]:
        """Corrections as numbered records; labeled events held for `_batches`."""
        out = []
        for result in results:
            if isinstance(result, LabeledEvent):
                self._labeled.append(result)
                continue
            late: LateClick = result
            seq, headers = self._next()
            value = dumps({"id": late.id, "ts": late.ts, "click_ts": late.click_ts})
            out.append(OutRecord(CORRECTIONS, late.id.encode(), value, late.click_ts, seq, headers))
        return out

    def _batches(self) -> list[OutRecord]:
        events, self._labeled = self._labeled, []
        if self.config.labeled_batch_max == 1:
            return [self._plain(e) for e in events]
        encoded = [encode_labeled(e) for e in events]
        out = []
        cuts = _cuts(
            [len(v) for v in encoded],
            self.config.labeled_batch_max,
            self.config.labeled_batch_bytes,
        )
        for start, end in itertools.pairwise(cuts):
            value, format_headers = labeled_batch(encoded[start:end])
            seq, headers = self._next()
            ts = max(e.ts for e in events[start:end])
            out.append(OutRecord(LABELED, None, value, ts, seq, headers + tuple(format_headers)))
        return out

    def _plain(self, event: LabeledEvent) -> OutRecord:
        seq, headers = self._next()
        return OutRecord(LABELED, event.id.encode(), encode_labeled(event), event.ts, seq, headers)

    def _dead_letter(self, record: InRecord, exc: RecordError) -> OutRecord:
        self.dead_letters[exc.reason] += 1
        seq, headers = self._next()
        why = (
            ("fmstream.error", exc.reason.encode()),
            ("fmstream.error.message", str(exc).encode()),
            ("fmstream.source.topic", self._sources[record.topic].encode()),
            ("fmstream.source.partition", str(record.partition).encode()),
            ("fmstream.source.offset", str(record.offset).encode()),
        )
        return OutRecord(
            DEAD_LETTER, record.key, record.value, record.timestamp, seq, headers + why
        )


def _cuts(sizes: list[int], max_events: int, max_bytes: int) -> list[int]:
    """Where consecutive runs of at most `max_events` events and `max_bytes` bytes
    start, and the end (one event larger than `max_bytes` is a run of its own)."""
    cuts, count, size = [0], 0, 0
    for i, n in enumerate(sizes):
        if count and (count == max_events or size + n + 1 > max_bytes):
            cuts.append(i)
            count, size = 0, 0
        count += 1
        size += n + 1  # its comma or bracket
    if count:
        cuts.append(len(sizes))
    return cuts
