from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson
import pytest

from stream import events, wire
from stream.errors import RecordError
from stream.events import (
    Click,
    FeatureValue,
    Impression,
    LabeledEvent,
    decode_click,
    decode_impression,
    decode_labeled,
    encode_click,
    encode_impression,
    encode_labeled,
)
from stream.simulate.malformed import MALFORMED_KINDS, malformed_record

FEATURES: dict[str, FeatureValue] = {
    "user_id": "u1",
    "price": 9.5,
    "clicks": 3,
    "apps": ["food", "games"],
}


def test_round_trips() -> None:
    imp = Impression("i1", 1_700_000_000_000, FEATURES)
    assert decode_impression(encode_impression(imp)) == imp
    click = Click("i1", 1_700_000_000_500)
    assert decode_click(encode_click(click)) == click
    ev = LabeledEvent("i1", 1, 1, 5, FEATURES)
    assert decode_labeled(encode_labeled(ev)) == ev
    assert decode_labeled(encode_labeled(LabeledEvent("i2", 1, 0, None, {}))).click_ts is None


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_every_malformed_kind_is_rejected_for_both_topics(kind: str) -> None:
    raw = malformed_record(kind, 1, 1_700_000_000_000)
    assert b"\n" not in raw
    with pytest.raises(RecordError):
        decode_impression(raw)
    if kind not in ("features_not_object", "feature_value_object"):
        with pytest.raises(RecordError):
            decode_click(raw)


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b"{not json", "invalid_json", "not valid UTF-8 JSON"),
        (b"[1]", "not_object", "expected a JSON object"),
        (b'{"ts": 1, "features": {}}', "missing_field", "'id' is missing"),
        (b'{"id": "a", "ts": true, "features": {}}', "wrong_type", "'ts' must be"),
        (b'{"id": "a", "ts": -5, "features": {}}', "ts_out_of_range", "not a 64-bit time"),
        (b'{"id": "a", "ts": 1e20, "features": {}}', "ts_out_of_range", "not a 64-bit time"),
        (b'{"id": "a", "ts": 100000000000000000000, "features": {}}', "ts_out_of_range", "ms"),
        (b'{"id": "a", "ts": 1.5, "features": {}}', "wrong_type", "must be an integer"),
        (None, "null_value", "tombstone"),
        (b'{"id": "", "ts": 1, "features": {}}', "wrong_type", "non-empty string"),
        (b'{"id": "a", "ts": 1, "features": {"x": [1, 2]}}', "bad_feature", "feature 'x'"),
        (b'{"id": "a", "ts": 1, "features": {"x": null}}', "bad_feature", "feature 'x'"),
    ],
)
def test_rejections_name_the_problem(raw: bytes | None, reason: str, words: str) -> None:
    with pytest.raises(RecordError) as info:
        decode_impression(raw)
    assert info.value.reason == reason
    assert words in str(info.value)


def test_oversize_records_are_rejected_before_parsing() -> None:
    raw = orjson.dumps({"id": "a", "ts": 1, "features": {"x": "y" * 2000}})
    with pytest.raises(RecordError) as info:
        decode_impression(raw, max_bytes=1000)
    assert info.value.reason == "oversize"
    assert decode_impression(raw, max_bytes=len(raw)).id == "a"


def test_labeled_label_must_be_zero_or_one() -> None:
    raw = b'{"id": "a", "ts": 1, "label": 2, "click_ts": null, "features": {}}'
    with pytest.raises(RecordError, match="'label' must be 0 or 1"):
        decode_labeled(raw)


EDGES = [
    b'{"id": "a", "ts": 1, "features": {}}',
    b' {"id": "a", "ts": 1, "features": {"x": -0.0, "y": 1E5, "z": 10, "w": []}} ',
    b'{"id": "a", "id": "b", "ts": 1, "features": {"x": 1, "x": "two"}}',
    b'{"id": "a", "ts": 1, "features": {}, "extra": {"deep": [1, {"n": null}]}}',
    b'{"id": "a", "ts": 9223372036854775807, "features": {"x": -9223372036854775808}}',
    b'{"id": "a", "ts": 9223372036854775808, "features": {}}',
    b'{"id": "a", "ts": 1, "features": {"x": 18446744073709551615}}',
    b'{"id": "a", "ts": 1, "features": {"x": 1e308, "y": 1e400}}',
    b'{"id": "a", "ts": 1, "features": {"x": true}}',
    b'{"id": "a", "ts": 1, "features": {"x": ["a", false]}}',
    b'{"id": "a", "ts": 1, "features": {"x": {"y": 1}}}',
    b'{"id": "a", "ts": 1, "features": {"x": "\\ud800"}}',
    b'{"id": "a", "ts": 1, "features": {"x": "\xff"}}',
    b'{"id": "a", "ts": 1, "features": {"x": NaN}}',
    b'{"id": "a", "ts": 1.0, "features": {}}',
    b'{"id": 7, "ts": 1, "features": {}}',
    b'{"id": "a", "ts": 1}',
    b'{"id": "a", "ts": 1, "features": []}',
    b'{"id": "a", "ts": 1, "features": {}} trailing',
    b'{"id": "a", "ts": 1, "features": {}, "extra": "\xff"}',
    b'{"id": "a", "ts": 1, "features": {}, "extra": 1e400}',
    b"",
]


PATHS: list[tuple[Any, Callable[[dict[str, Any]], Any], Callable[[bytes], Any]]] = [
    (wire.IMPRESSION, events._impression, decode_impression),
    (wire.CLICK, events._click, decode_click),
]


@pytest.mark.parametrize("raw", EDGES)
def test_the_fast_decoder_accepts_only_what_the_reference_decoder_does(raw: bytes) -> None:
    """msgspec (stream.wire) decodes valid inputs; anything it rejects goes through
    the orjson path, which names the problem: on every edge both give one answer."""
    for fast, reference, public in PATHS:
        try:
            expected = events._decoded(raw, len(raw) + 1, reference)
        except RecordError as exc:
            with pytest.raises(msgspec.MsgspecError):
                fast.decode(raw)
            with pytest.raises(RecordError) as info:
                public(raw)
            assert info.value.reason == exc.reason
            continue
        decoded = public(raw)
        assert decoded == expected
        if isinstance(decoded, Impression):
            assert decoded.raw in (raw, None)  # kept only as what it was decoded from
        try:
            wired = fast.decode(raw)
        except msgspec.MsgspecError:
            continue  # the reference path has the last word
        fields = msgspec.structs.asdict(wired)
        assert fields == {k: getattr(expected, k) for k in fields}
