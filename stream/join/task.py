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
    IMPRESSIONS,
    LabeledEvent,
    decode_click,
    decode_impression,
    dumps,
    encode_labeled,
)
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
from stream.joiner import JoinConfig, JoinerCore, LateClick, Output

EARLIEST_TS = 946_684_800_000  # 2000-01-01: anything older is a unit or clock mistake
LATEST_TS = 4_102_444_800_000  # 2100-01-01


@dataclass(frozen=True)
class TaskConfig:
    join: JoinConfig = field(default_factory=JoinConfig)
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # How far an event time may stray from the partition's current event time (or,
    # before any, from the record's broker timestamp) before it is dead-lettered.
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

    def process(self, records: Iterable[InRecord]) -> list[OutRecord]:
        out: list[OutRecord] = []
        for record in records:
            self.consumed[record.topic] += 1
            self.offsets[record.topic] = record.offset + 1
            try:
                results = self._join(record)
            except RecordError as exc:
                out.append(self._dead_letter(record, exc))
                continue
            out.extend(self._output(r) for r in results)
        return out

    def advance_to(self, event_ts: int, inputs: Collection[str]) -> list[OutRecord]:
        return [self._output(r) for r in self.core.advance_to(event_ts, inputs)]

    def entry(self, outbox: list[OutRecord]) -> Entry:
        """The changelog entry of everything since the last one."""
        progress = Progress(dict(self.offsets), self.core.event_times, self.seq, dict(self.marks))
        return Entry(self.partition, progress, self.core.take_changes(), outbox)

    def _join(self, record: InRecord) -> list[Output]:
        limit = self.config.max_record_bytes
        if record.topic == IMPRESSIONS:
            imp = decode_impression(record.value, limit)
            self._check_time(imp.ts, record.timestamp)
            return self.core.impression(imp)
        click = decode_click(record.value, limit)
        self._check_time(click.ts, record.timestamp)
        return self.core.click(click)

    def _check_time(self, ts: int, broker_ts: int) -> None:
        if not EARLIEST_TS <= ts < LATEST_TS:
            raise RecordError("ts_out_of_range", f"event time {ts} ms is not between 2000 and 2100")
        newest = self.core.newest
        reference = newest if newest is not None else broker_ts
        if abs(ts - reference) > self.config.max_skew_ms:
            raise RecordError(
                "ts_out_of_range",
                f"event time {ts} ms is {abs(ts - reference)} ms from the partition's event "
                f"time {reference} (limit {self.config.max_skew_ms})",
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
