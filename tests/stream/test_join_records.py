from __future__ import annotations

import pytest

from stream.errors import RecordError
from stream.events import Impression, LabeledEvent, encode_labeled, encode_labeled_batch
from stream.join.core import DONE, PENDING, WAITING
from stream.join.records import (
    DEAD_LETTER,
    LABELED,
    SEQ_HEADER,
    SRC_HEADER,
    Entry,
    OutRecord,
    Progress,
)


def test_a_changelog_entry_survives_its_encoding() -> None:
    labeled = encode_labeled(LabeledEvent("a", 5, 1, 9, {"f": "x", "n": 1.5, "m": ["p", "q"]}))
    headers = ((SRC_HEADER, b"3"), (SEQ_HEADER, b"7"))
    batch, fmt = encode_labeled_batch(
        [LabeledEvent("b", 6, 0, None, {"f": "y"}), LabeledEvent("c", 6, 1, 8, {"é": "ü"})]
    )
    batch_headers = ((SRC_HEADER, b"3"), (SEQ_HEADER, b"9"), *fmt)
    entry = Entry(
        3,
        Progress({"impressions": 10, "clicks": 4}, (1_000, None), 9, {"labeled:3": 120}),
        [
            (PENDING, "b", Impression("b", 6, {"f": "y"})),
            (PENDING, "a", None),
            (WAITING, "c", 7),
            (DONE, "a", (1, 5, False)),
        ],
        [
            OutRecord(LABELED, b"a", labeled, 5, 7, headers),
            OutRecord(DEAD_LETTER, None, b"\xff\x00not json", 8, 8, (("fmstream.error", b"x"),)),
            OutRecord(LABELED, None, batch, 6, 9, batch_headers),
        ],
    )
    again = Entry.decode(entry.encode(), "changelog[3]@0")
    assert again == entry


def test_an_unreadable_entry_names_where_it_is() -> None:
    with pytest.raises(RecordError, match=r"changelog entry at changelog\[1\]@42"):
        Entry.decode(b'{"v": 1}', "changelog[1]@42")
