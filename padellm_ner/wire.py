"""The core's enums on the wire: their `padellm.v1` protobuf values and back (by member name, so that a member
added to both sides maps without code)."""

from __future__ import annotations

from padellm.v1 import types_pb2

from .core.aggregate import FinishReason
from .core.parsing import CountStatus

COUNT_STATUS_TO_PROTO = {s: types_pb2.CountStatus.Value(f"COUNT_STATUS_{s.name}") for s in CountStatus}
COUNT_STATUS_FROM_PROTO = {v: s for s, v in COUNT_STATUS_TO_PROTO.items()}
FINISH_TO_PROTO = {f: types_pb2.FinishReason.Value(f"FINISH_REASON_{f.name}") for f in FinishReason}
FINISH_FROM_PROTO = {v: f for f, v in FINISH_TO_PROTO.items()}


def count_status_of(value: int) -> CountStatus:
    """A status from the wire; UNSPECIFIED (a sender that did not say) reads as OK."""
    return COUNT_STATUS_FROM_PROTO.get(value, CountStatus.OK)


def finish_of(value: int) -> FinishReason:
    """A finish reason from the wire; UNSPECIFIED reads as STOP."""
    return FINISH_FROM_PROTO.get(value, FinishReason.STOP)
