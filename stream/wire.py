"""The fast path of input decoding: impressions and clicks validated by msgspec
in one C pass, straight from their bytes.

It accepts exactly what `stream.events` accepts, or less: whatever it rejects
goes through the orjson path of `stream.events`, which names the problem (its reason code)
or, where the two disagree at an edge (an integer feature between 2**63 and
2**64), has the last word. Unknown fields are refused here rather than skipped:
msgspec skips a field without checking its text (invalid UTF-8, 1e400), which
the orjson path rejects, so a record with extra fields takes that path.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

_MAX_I64 = 2**63 - 1
_MAX_F64 = 1.7976931348623157e308
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_Ts = Annotated[int, msgspec.Meta(ge=0, le=_MAX_I64)]
# A feature: a string, a finite number (infinity is out of range) or a list of strings.
_Feature = (
    str
    | Annotated[int, msgspec.Meta(ge=-_MAX_I64 - 1, le=_MAX_I64)]
    | Annotated[float, msgspec.Meta(ge=-_MAX_F64, le=_MAX_F64)]
    | list[str]
)


class _ImpressionWire(msgspec.Struct, forbid_unknown_fields=True):
    id: _Id
    ts: _Ts
    features: dict[str, _Feature]


class _ClickWire(msgspec.Struct, forbid_unknown_fields=True):
    id: _Id
    ts: _Ts


IMPRESSION = msgspec.json.Decoder(_ImpressionWire)
CLICK = msgspec.json.Decoder(_ClickWire)
WireError = msgspec.MsgspecError
