"""One partition's join: decode and validate its input records, run the core, and
turn what comes out into numbered output records (labeled, corrections, dead
letters). Pure: no clients, no clock; the daemon feeds it and persists it.
"""

from __future__ import annotations

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
        self.consumed: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self._src = str(partition).encode()

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
            out.extend(self._output(r) for r in results)
        return out

    def advance_to(self, event_ts: int, inputs: Collection[str]) -> list[OutRecord]:
        return [self._output(r) for r in self.core.advance_to(event_ts, inputs)]

    def entry(self, outbox: list[OutRecord]) -> Entry:
        """The changelog entry of everything since the last one."""
        progress = Progress(dict(self.offsets), self.core.event_times, self.seq, dict(self.marks))
        return Entry(self.partition, progress, self.core.take_changes(), outbox)

    def close_idle(self, event_ts: int) -> list[OutRecord]:
        """Closes what an idle partition holds as if event time were `event_ts`, without
        moving its event time (see JoinerCore.close_before)."""
        return [self._output(r) for r in self.core.close_before(event_ts)]

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

    def _output(self, result: Output) -> OutRecord:
        seq, headers = self._next()
        if isinstance(result, LabeledEvent):
            key = result.id.encode()
            return OutRecord(LABELED, key, encode_labeled(result), result.ts, seq, headers)
        late: LateClick = result
        value = dumps({"id": late.id, "ts": late.ts, "click_ts": late.click_ts})
        return OutRecord(CORRECTIONS, late.id.encode(), value, late.click_ts, seq, headers)

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
