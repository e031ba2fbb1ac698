"""A join task's recovery from its changelog, and the checkpoints that bound it.

Recovery starts where the local state stopped, or, without usable local state,
at the newest complete checkpoint that the changelog's last record names (the
partition's first record when it has none): the checkpoint's chunks rebuild the
state, the entries after it replay the batches since, and the outbox of the
last entry is completed. So its cost is one checkpoint plus the entries written
since, whatever the length of the history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from stream.errors import JoinStateError
from stream.join.checkpoint import ChangelogRecord, ChangelogTail, Chunk, Mark, chunks
from stream.join.records import Entry, OutRecord
from stream.join.state import JoinState
from stream.join.task import JoinTask, TaskConfig

log = logging.getLogger(__name__)
_APPLY_EVERY = 256


class SentOutputs(Protocol):
    def wait(self) -> dict[int, dict[str, int]]:
        """Blocks until the outputs landed; the new marks of each task partition
        whose outputs did (a partition released meanwhile is left out)."""
        ...


class JoinOutputs(Protocol):
    """Changelog records and outputs out, and back in for recovery (`JoinIO`)."""

    def claim(self, partition: int) -> None: ...
    def release(self, partition: int) -> None: ...
    def commit(self) -> None: ...
    def write_entries(self, entries: list[Entry]) -> list[int]: ...
    def append(self, partition: int, values: list[bytes]) -> list[int]: ...
    def write_outputs(
        self, outboxes: Mapping[int, list[OutRecord]]
    ) -> dict[int, dict[str, int]]: ...
    def send_outputs(self, outboxes: Mapping[int, list[OutRecord]]) -> SentOutputs: ...
    def changelog(self, partition: int, start: int) -> Iterator[tuple[int, ChangelogRecord]]: ...
    def tail(self, partition: int) -> ChangelogTail: ...
    def landed(self, entry: Entry) -> set[int]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Recovered:
    task: JoinTask
    start: int  # the changelog offset read from
    records: int  # changelog records read
    resent: int  # outputs of the last entry that had not landed
    seconds: float


def recover(
    io: JoinOutputs,
    state: JoinState,
    partition: int,
    config: TaskConfig,
    source_topics: Mapping[str, str],
    use_checkpoints: bool = True,
) -> Recovered:
    """The task of `partition` as of the changelog's end, its last outbox completed.
    `use_checkpoints=False` reads the whole history (for comparison). It first claims
    the partition: from then on no earlier owner can write to it, so the changelog
    it reads to the end stays the end."""
    began = time.perf_counter()
    io.claim(partition)
    tail = io.tail(partition)
    start = start_offset(state, partition, tail, use_checkpoints)
    records, last = _replay(io, state, partition, start, start == tail.base)
    resent = 0
    if last is not None:
        landed = io.landed(last)
        missing = [o for o in last.outbox if o.seq not in landed]
        io.write_outputs({partition: missing})
        resent = len(missing)
    stored = state.progress(partition)
    progress = stored[0] if stored else None
    task = JoinTask(partition, config, source_topics, progress)
    if progress is not None:
        state.load_into(partition, task.core, progress.times)
    seconds = time.perf_counter() - began
    log.info(
        "join_partition_recovered partition=%d from_offset=%d records=%d resent=%d seconds=%.2f",
        *(partition, start, records, resent, seconds),
    )
    return Recovered(task, start, records, resent, seconds)


def start_offset(
    state: JoinState, partition: int, tail: ChangelogTail, use_checkpoints: bool
) -> int:
    """Where to read: after the local state where that is at or past the checkpoint
    (and not deleted by retention), else at the checkpoint with the state reset."""
    local = state.progress(partition)
    base = tail.base if use_checkpoints else -1
    if local is not None and local[1] >= max(base, tail.first):
        return local[1]
    start = max(base, 0)
    if start < tail.first:
        raise JoinStateError(
            f"the join changelog of partition {partition} starts at offset {tail.first} "
            f"but its state starts at {start}: retention deleted records the state needs. "
            "Keep the changelog's retention.ms well above join.state_checkpoint_interval_s"
        )
    if local is not None:
        state.reset(partition)
    return start


def _replay(
    io: JoinOutputs, state: JoinState, partition: int, start: int, from_checkpoint: bool
) -> tuple[int, Entry | None]:
    """Applies the changelog from `start`; the records read and the last entry not
    followed by a checkpoint (its outbox may be unfinished)."""
    batch: list[tuple[ChangelogRecord, int]] = []
    count, chunk_run = 0, 0
    last: Entry | None = None
    in_checkpoint = from_checkpoint
    for offset, record in io.changelog(partition, start):
        count += 1
        if in_checkpoint:
            chunk_run = _check_checkpoint(partition, start, offset, record, chunk_run)
            in_checkpoint = isinstance(record, Chunk)
        if isinstance(record, Entry):
            last = record
        elif isinstance(record, Mark):
            last = None  # every batch before a checkpoint had landed
        batch.append((record, offset))
        if len(batch) >= _APPLY_EVERY:
            state.apply(batch)
            batch = []
    if batch:
        state.apply(batch)
    if in_checkpoint and count:
        raise JoinStateError(
            f"the join checkpoint of partition {partition} at changelog offset {start} "
            "has no mark: the changelog was changed by something other than the joiner"
        )
    return count, last


def _check_checkpoint(
    partition: int, start: int, offset: int, record: ChangelogRecord, run: int
) -> int:
    """The chunks read so far of the checkpoint at `start`; raises where the records
    there are not one checkpoint's chunks followed by its mark."""
    if isinstance(record, Chunk):
        return run + 1
    if isinstance(record, Mark) and record.chunks == run and record.progress.base == start:
        return run
    raise JoinStateError(
        f"the join changelog of partition {partition} names a checkpoint at offset {start}, "
        f"but offset {offset} does not complete it ({run} chunks read): the changelog was "
        "changed by something other than the joiner"
    )


def write_checkpoint(io: JoinOutputs, state: JoinState, task: JoinTask) -> int:
    """Writes the task's whole state to its changelog partition; the offset of the
    checkpoint, which every record after it names. Call it between batches: the
    task's state must all be in entries already."""
    if not task.between_entries:
        raise ValueError("a checkpoint between entries would hold changes no entry has")
    parts = chunks(task.partition, task.core.rows(), task.base)
    first = io.append(task.partition, parts)[0]
    mark = Mark(task.partition, task.progress(base=first), len(parts))
    state.apply([(mark, io.append(task.partition, [mark.encode()])[0])])
    task.base = first
    return first
