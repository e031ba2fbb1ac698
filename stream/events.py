"""The records that travel between fmstream's parts, and their JSON codec.

Formats are those of DESIGN.md: impressions `{"id", "ts", "features"}`, clicks
`{"id", "ts"}`, labeled events `{"id", "ts", "label", "click_ts", "features"}`.
A feature value is a string (categorical), a number (continuous) or a list of
strings (multi-valued). Decoding validates everything a downstream consumer
relies on and raises `RecordError` with a stable reason code otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from stream import wire
from stream.errors import RecordError

FeatureValue = str | float | int | list[str]
Features = Mapping[str, FeatureValue]
T = TypeVar("T")

DEFAULT_MAX_RECORD_BYTES = 64 * 1024
DEFAULT_MAX_BATCH_BYTES = 16 * 1024 * 1024
# A record whose value is not one event names its format in this header.
FORMAT_HEADER = "fmstream.format"
LABELED_BATCH_V1 = b"labeled-batch/1"
DAY_MS = 86_400_000
EARLIEST_TS = 946_684_800_000  # 2000-01-01: anything older is a unit or clock mistake
LATEST_TS = 4_102_444_800_000  # 2100-01-01
# The joiner's two inputs by their logical names (the Kafka topics are configurable).
IMPRESSIONS, CLICKS = "impressions", "clicks"


@dataclass(frozen=True, slots=True)
class Impression:
    id: str
    ts: int
    features: Features
    # The record it was decoded from, where that holds exactly these fields: its
    # encoding as it stands, so the joiner stores it without encoding it again.
    raw: bytes | None = dataclasses.field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Click:
    id: str
    ts: int


@dataclass(frozen=True, slots=True)
class LabeledEvent:
    id: str
    ts: int
    label: int
    click_ts: int | None
    features: Features


def dumps(obj: Any) -> bytes:
    """orjson.dumps into an exactly sized bytes object.

    orjson's result keeps its whole growth buffer (~8 KiB for a 300-byte
    record); held by the hundred thousand, as a day of records is, that is
    gigabytes.
    """
    return bytes(memoryview(orjson.dumps(obj)))


def encode_impression(imp: Impression) -> bytes:
    if imp.raw is not None:
        return imp.raw
    return dumps({"id": imp.id, "ts": imp.ts, "features": imp.features})


def encode_click(click: Click) -> bytes:
    return dumps({"id": click.id, "ts": click.ts})


def encode_labeled(ev: LabeledEvent) -> bytes:
    return dumps(_labeled_object(ev))


def encode_labeled_batch(events: list[LabeledEvent]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """An example batch: many labeled events in one record, and the header naming its
    format (DESIGN.md: why example batches)."""
    return labeled_batch([encode_labeled(ev) for ev in events])


def labeled_batch(encoded: Sequence[bytes]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The example batch of events already encoded one by one (`encode_labeled`): the
    JSON array of them, byte for byte, and its format header."""
    return b"[" + b",".join(encoded) + b"]", [(FORMAT_HEADER, LABELED_BATCH_V1)]


def _labeled_object(ev: LabeledEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "ts": ev.ts,
        "label": ev.label,
        "click_ts": ev.click_ts,
        "features": ev.features,
    }


def decode_labeled_record(
    raw: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> list[LabeledEvent | RecordError]:
    """The events of a `labeled` record in order: one for a plain labeled event, many
    for an example batch. A bad event inside a batch is its own RecordError, in its
    place (its index is where it stood); a record that is bad as a whole raises one."""
    kind = dict(headers or ()).get(FORMAT_HEADER)
    if kind is None:
        return [decode_labeled(raw, max_bytes)]
    if kind != LABELED_BATCH_V1:
        raise RecordError(
            "unknown_format",
            f"{FORMAT_HEADER} is {_short(kind)}; this version reads "
            f"{LABELED_BATCH_V1.decode()} and plain labeled events",
        )
    items = _load_json(raw, max_bytes)
    if not isinstance(items, list):
        raise RecordError("not_array", f"a batch is a JSON array, got {type(items).__name__}")
    return [_batched(item) for item in items]


def _batched(item: Any) -> LabeledEvent | RecordError:
    try:
        if not isinstance(item, dict):
            raise RecordError("not_object", f"expected a JSON object, got {type(item).__name__}")
        return _labeled(item)
    except Exception as exc:
        error = exc if isinstance(exc, RecordError) else None
        error = error or RecordError("undecodable", f"{type(exc).__name__}: {exc}")
        error.value = dumps(item)
        return error


def decode_impression(raw: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Impression:
    imp = _fast(raw, max_bytes, wire.IMPRESSION)
    if imp is not None:
        return Impression(imp.id, imp.ts, imp.features, raw)
    return reference_impression(raw, max_bytes)


def decode_click(raw: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Click:
    click = _fast(raw, max_bytes, wire.CLICK)
    if click is not None:
        return Click(click.id, click.ts)
    return _decoded(raw, max_bytes, _click)


def _fast(raw: bytes | None, max_bytes: int, decoder: Any) -> Any:
    """What msgspec decodes `raw` into, or None where it refuses it: the orjson path
    then names what is wrong."""
    if raw is None or len(raw) > max_bytes:
        return None
    try:
        return decoder.decode(raw)
    except wire.WireError:
        return None


def reference_impression(
    raw: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Impression:
    """`decode_impression` without its fast path: the orjson path alone (for the
    benchmark that compares them)."""
    return _decoded(raw, max_bytes, _impression)


def decode_labeled(raw: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> LabeledEvent:
    return _decoded(raw, max_bytes, _labeled)


def decode_input(
    topic: str, raw: bytes | None, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> Impression | Click:
    """A joiner input record ("impressions", else a click) as its event."""
    if topic == IMPRESSIONS:
        return decode_impression(raw, max_bytes)
    return decode_click(raw, max_bytes)


def _decoded(raw: bytes | None, max_bytes: int, build: Callable[[dict[str, Any]], T]) -> T:
    """The one place where record bytes become an event: whatever goes wrong on the way
    is a RecordError, so a consumer that dead-letters RecordErrors never stops for a
    record, whatever a validator below overlooked."""
    try:
        return build(_load_object(raw, max_bytes))
    except RecordError:
        raise
    except Exception as exc:
        raise RecordError("undecodable", f"{type(exc).__name__}: {exc}") from exc


def _impression(obj: dict[str, Any]) -> Impression:
    return Impression(_id(obj), _ts(obj, "ts"), _features(obj))


def _click(obj: dict[str, Any]) -> Click:
    return Click(_id(obj), _ts(obj, "ts"))


def _labeled(obj: dict[str, Any]) -> LabeledEvent:
    label = _require(obj, "label")
    if label not in (0, 1) or isinstance(label, bool):
        raise RecordError("wrong_type", f"'label' must be 0 or 1, got {_short(label)}")
    click_ts = obj.get("click_ts")
    if click_ts is not None:
        click_ts = _ts(obj, "click_ts")
    return LabeledEvent(_id(obj), _ts(obj, "ts"), label, click_ts, _features(obj))


def _load_json(raw: bytes | None, max_bytes: int) -> Any:
    if raw is None:
        raise RecordError("null_value", "the record has no value (a null value, a tombstone)")
    if len(raw) > max_bytes:
        raise RecordError("oversize", f"record is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError("invalid_json", f"not valid UTF-8 JSON: {exc}") from exc


def _load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    obj = _load_json(raw, max_bytes)
    if not isinstance(obj, dict):
        raise RecordError("not_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _short(value: object, limit: int = 80) -> str:
    """A value for an error message, cut so a hostile record cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _require(obj: dict[str, Any], key: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise RecordError("missing_field", f"required field {key!r} is missing") from None


def _id(obj: dict[str, Any]) -> str:
    value = _require(obj, "id")
    if not isinstance(value, str) or not value:
        raise RecordError("wrong_type", f"'id' must be a non-empty string, got {_short(value)}")
    return value


def _ts(obj: dict[str, Any], key: str) -> int:
    value = _require(obj, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError("wrong_type", f"{key!r} must be an integer (ms), got {_short(value)}")
    if not 0 <= value < 2**63:
        raise RecordError(
            "ts_out_of_range", f"{key!r} = {_short(value)} ms is not a 64-bit time in ms"
        )
    if isinstance(value, float):
        raise RecordError("wrong_type", f"{key!r} must be an integer (ms), got {value!r}")
    return value


def _features(obj: dict[str, Any]) -> dict[str, FeatureValue]:
    value = _require(obj, "features")
    if not isinstance(value, dict):
        raise RecordError("wrong_type", f"'features' must be an object, got {type(value).__name__}")
    # Parsed JSON holds exact types and never a non-finite float (orjson rejects them),
    # so the common case is C-level passes over the value types (and the lists' items).
    types = set(map(type, value.values()))
    if types <= _PLAIN_TYPES:
        return value
    if types <= _PLAIN_OR_LIST and all(
        set(map(type, v)) <= _STR for v in value.values() if type(v) is list
    ):
        return value
    for field, fv in value.items():
        if not _valid_feature(fv):
            raise RecordError(
                "bad_feature",
                f"feature {_short(field)} has value {_short(fv)}: expected a string, a finite "
                "number or a list of strings",
            )
    return value


_PLAIN_TYPES = {str, int, float}
_PLAIN_OR_LIST = {str, int, float, list}
_STR = {str}


def _valid_feature(value: object) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(isinstance(v, str) for v in value)
    return False
