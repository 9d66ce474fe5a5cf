"""Exceptions raised by the client. All derive from :class:`SendgateError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # imported for annotations only
    from .kafka import Published
    from .records import Decision

__all__ = [
    "SendgateError",
    "SchemaError",
    "DecodeError",
    "PublishError",
    "DecisionTimeout",
    "FollowError",
    "ApiError",
]


class SendgateError(Exception):
    """Base class of every error this package raises."""


class SchemaError(SendgateError):
    """The Avro schemas could not be found or do not parse."""


class DecodeError(SendgateError):
    """Bytes that are not a single-object record of the expected type.

    Raised for a missing ``C3 01`` header, a fingerprint of another schema,
    a datum that does not decode, or bytes left over after the datum.
    """


class PublishError(SendgateError):
    """Records were not acknowledged by the broker.

    ``published`` holds the records that were acknowledged (in the order
    given), ``failures`` pairs the position of each record that failed with
    the broker's or the client's reason, and ``unacknowledged`` counts the
    records still without an answer when the wait ended.
    """

    def __init__(
        self,
        message: str,
        published: Sequence["Published"] = (),
        failures: Sequence[Tuple[int, str]] = (),
        unacknowledged: int = 0,
    ) -> None:
        super().__init__(message)
        self.published: List["Published"] = list(published)
        self.failures: List[Tuple[int, str]] = list(failures)
        self.unacknowledged = unacknowledged


class DecisionTimeout(SendgateError, TimeoutError):
    """Not every awaited intent got a decision in time.

    ``decisions`` are the ones that came (in the order asked), ``missing``
    the intent ids still without one.
    """

    def __init__(self, message: str, decisions: Sequence["Decision"], missing: Sequence[str]) -> None:
        super().__init__(message)
        self.decisions: List["Decision"] = list(decisions)
        self.missing: List[str] = list(missing)


class FollowError(SendgateError):
    """The decisions topic cannot be read (missing topic, refused access, fatal client error)."""


class ApiError(SendgateError):
    """The HTTP API answered with an error status.

    ``status`` is the HTTP status, ``message`` the API's ``{"error": ...}``
    text (or the body when it is not such JSON), ``retry_after`` the
    seconds a ``Retry-After`` header asked for, if any.
    """

    def __init__(self, status: int, message: str, retry_after: Optional[float] = None, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.body = body
