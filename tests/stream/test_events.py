from __future__ import annotations

import orjson
import pytest

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
