"""The one error type that callers see: a message, a status code and what the caller can do about it. Raised
anywhere (validation, backends, the service); mapped to a gRPC status with google.rpc details in one place, the
servers' interceptor (`padellm_ner.grpc_common.ErrorInterceptor`), and to a dead-letter reason on the stream."""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    """The gRPC status codes padellm-ner raises (names as in grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # the request is wrong: do not retry it
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # overloaded: retry later (RetryInfo says when, where known)
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # the service cannot read this request as deployed (no model)
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"  # a dependency cannot be reached: retry
    INTERNAL = "INTERNAL"  # a bug or a broken dependency


class PadellmError(Exception):
    """`field`: the request field at fault (INVALID_ARGUMENT; a google.rpc.BadRequest field violation);
    `retry_after_s`: when to try again (RESOURCE_EXHAUSTED; a google.rpc.RetryInfo)."""

    code = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        field: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.field = field
        self.retry_after_s = retry_after_s

    def in_field(self, prefix: str) -> PadellmError:
        """The same error about a field inside `prefix` (`document` + `text` -> `document.text`), its message led
        by that path."""
        path = f"{prefix}.{self.field}" if self.field else prefix
        return type(self)(f"{path}: {self}", code=self.code, field=path, retry_after_s=self.retry_after_s)
