"""The joiner's output in impression-time order, for learning offline.

The joiner emits a click's label at once and a non-click's when its window
closes, so its output runs positives a window ahead of negatives; learned in
that order, the last batches of a period are all negatives and drag every
frequent row down just before a snapshot. This puts the labeled events back in
impression-time order, releasing each once its window has closed.
"""

from __future__ import annotations

import heapq

from stream.events import LabeledEvent
from stream.join.core import JoinConfig, JoinerCore, Output, join_raw


class OrderedJoin:
    def __init__(self, config: JoinConfig) -> None:
        self.core = JoinerCore(config)
        self._window_ms = config.window_ms
        self._heap: list[tuple[int, int, LabeledEvent]] = []
        self._seq = 0

    def feed(self, topic: str, value: bytes) -> list[LabeledEvent]:
        """Joins one record ("impressions" or "clicks"; RecordError when malformed) and
        returns the events now released, oldest impression first."""
        self._push(join_raw(self.core, topic, value))
        return self._release(self.core.watermark)

    def finish(self) -> list[LabeledEvent]:
        """End of input: closes every window and releases everything."""
        self._push(self.core.flush())
        return self._release(None)

    def _push(self, out: list[Output]) -> None:
        for o in out:
            if isinstance(o, LabeledEvent):
                self._seq += 1
                heapq.heappush(self._heap, (o.ts, self._seq, o))

    def _release(self, watermark: int | None) -> list[LabeledEvent]:
        released = []
        while self._heap and (watermark is None or self._heap[0][0] + self._window_ms < watermark):
            released.append(heapq.heappop(self._heap)[2])
        return released
