"""The exception tree of the Message Batches client.

::

    BatchesError
    ├── APIConnectionError            the request did not get an HTTP answer
    │   └── APITimeoutError
    ├── APIStatusError                an HTTP answer with an error status
    │   ├── BadRequestError           400 invalid_request_error
    │   ├── AuthenticationError       401
    │   ├── PaymentRequiredError      402 billing_error
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404
    │   ├── RequestTimeoutError       408
    │   ├── ConflictError             409
    │   ├── RequestTooLargeError      413
    │   ├── UnprocessableEntityError  422
    │   ├── RateLimitError            429
    │   └── InternalServerError       >= 500
    │       ├── ServiceUnavailableError   503
    │       ├── GatewayTimeoutError       504
    │       └── OverloadedError           529
    ├── ResponseValidationError       a 2xx answer whose body is not what the API promises
    ├── ResultsChangedError           a resumed results download does not continue what was read
    ├── ResultsNotReadyError          results asked for a batch that has not ended
    │   └── ResultsExpiredError       results asked after the 29-day retention
    ├── ResultsTooLargeError          a results line past max_line_bytes, or more lines than
    │                                 the batch has requests
    └── UntrustedURLError             a URL in an answer is not on the API's origin

Every exception pickles (Airflow moves them between processes) and none of them ever holds
the API key: they are built from the response, never from the request headers.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchesError",
    "ConflictError",
    "GatewayTimeoutError",
    "InternalServerError",
    "NotFoundError",
    "OverloadedError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "RequestTooLargeError",
    "ResponseValidationError",
    "ResultsChangedError",
    "ResultsExpiredError",
    "ResultsNotReadyError",
    "ResultsTooLargeError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UntrustedURLError",
    "status_error_class",
]


class BatchesError(Exception):
    """Root of every error raised by airflow_batches."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def _state(self) -> dict[str, Any]:
        return {"message": self.message}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._state()))


def _rebuild(cls: type[BatchesError], state: dict[str, Any]) -> BatchesError:
    return cls(**state)


class APIConnectionError(BatchesError):
    """No HTTP answer: DNS, refused or dropped connection, TLS failure."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "method": self.method, "url": self.url}


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, read, write or pool)."""


class APIStatusError(BatchesError):
    """The API answered with an error status.

    ``message`` is the API's own ``error.message`` (or the start of a non-JSON body);
    ``context`` names the call (``"GET /v1/messages/batches/…"``) and shows only in ``str()``.
    """

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        context: str = "",
    ) -> None:
        self.status_code = status_code if status_code is not None else type(self).status_code
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after
        self.context = context
        text = f"{self.status_code} {error_type or 'error'}: "
        if context:
            text += f"{context}: "
        text += message
        if request_id:
            text += f" (request-id: {request_id})"
        super().__init__(text)
        self.message = message

    def _state(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "status_code": self.status_code,
            "error_type": self.error_type,
            "request_id": self.request_id,
            "retry_after": self.retry_after,
            "context": self.context,
        }


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PaymentRequiredError(APIStatusError):
    status_code = 402


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class RequestTimeoutError(APIStatusError):
    status_code = 408


class ConflictError(APIStatusError):
    status_code = 409


class RequestTooLargeError(APIStatusError):
    status_code = 413


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    status_code = 500


class ServiceUnavailableError(InternalServerError):
    status_code = 503


class GatewayTimeoutError(InternalServerError):
    status_code = 504


class OverloadedError(InternalServerError):
    status_code = 529


_BY_STATUS: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PaymentRequiredError,
        PermissionDeniedError,
        NotFoundError,
        RequestTimeoutError,
        ConflictError,
        RequestTooLargeError,
        UnprocessableEntityError,
        RateLimitError,
        ServiceUnavailableError,
        GatewayTimeoutError,
        OverloadedError,
    )
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code]
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


class ResponseValidationError(BatchesError):
    """A successful answer whose body does not match the documented shape."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message if not request_id else f"{message} (request-id: {request_id})")
        self.message = message
        self.request_id = request_id

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "request_id": self.request_id}


class _BatchError(BatchesError):
    """An error about one batch's results, naming the batch."""

    def __init__(self, message: str, *, batch_id: str = "") -> None:
        super().__init__(message)
        self.batch_id = batch_id

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "batch_id": self.batch_id}


class ResultsChangedError(_BatchError):
    """A results download, opened again after a cut, would not continue the bytes already read.

    The server sent another total length, or the start it sent again differs from what was
    read. Nothing wrong was handed out: the lines read so far are the old ones, intact. Start
    the whole read of the batch over (discarding what it produced).
    """


class ResultsNotReadyError(_BatchError):
    """Results were asked for a batch whose processing has not ended."""


class ResultsExpiredError(ResultsNotReadyError):
    """The batch's results are gone: they are kept 29 days from the batch's creation."""


class ResultsTooLargeError(_BatchError):
    """A batch's results hold a line longer than the client's ``max_line_bytes``, or more
    lines than the batch has requests (with a small slack): the download stops there, and
    nothing read from it may be published. Not worth another read: the server would send the
    same."""


class UntrustedURLError(_BatchError):
    """A URL taken from an answer (a batch's ``results_url``) is on another origin (scheme,
    host, port) than the API's and not in the client's ``results_origins``: nothing is sent
    there, so the API key never leaves for a server the user did not name."""


def connection_error_from(exc: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
    """Map an httpx transport failure to ours, in one place.

    Only the method and URL are kept: never headers, which carry the key.
    """
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    kind = type(exc).__name__
    detail = str(exc) or kind
    return cls(
        f"{kind} on {request.method} {request.url}: {detail}",
        method=request.method,
        url=str(request.url),
    )
