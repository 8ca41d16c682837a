"""API errors and the one envelope every API error renders as.

The exceptions, at a glance::

    ApiException                   400  bad-request
    ├── MalformedJson              400  malformed-json
    ├── InvalidCursor              400  invalid-cursor
    ├── Unauthorized               401  unauthorized
    ├── Forbidden                  403  forbidden
    ├── NotFound                   404  not-found
    ├── MethodNotAllowed           405  method-not-allowed
    ├── Conflict                   409  conflict
    ├── PayloadTooLarge            413  payload-too-large
    ├── UnsupportedMediaType       415  unsupported-media-type
    ├── ValidationFailed           422  validation-failed (or 400, see VALIDATION_ERROR_STATUS)
    ├── TooManyRequests            429  too-many-requests
    ├── InternalServerError        500  internal-server-error
    └── ServiceUnavailable         503  service-unavailable

Each has a stable ``type`` URI: ``PROBLEM_TYPE_BASE`` + its ``slug``
(``urn:karaffe:problem:validation-failed`` by default).

The body is RFC 9457 ``application/problem+json``, produced by
:class:`ProblemFormatter`. To change the envelope, set ``App.problem_formatter``
to your own formatter: its ``model`` is what the OpenAPI document publishes,
and its ``render`` builds an instance of that same model, so the documented
schema and the returned body cannot drift apart.
"""

from __future__ import annotations

import functools
import typing as t
from collections.abc import Sequence

import orjson
from flask import Flask, Response, current_app
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from werkzeug.exceptions import HTTPException

from ..config import CoreSettings

__all__ = [
    "ApiException",
    "Conflict",
    "ErrorItem",
    "Forbidden",
    "InternalServerError",
    "InvalidCursor",
    "MalformedJson",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "Problem",
    "ProblemFormatter",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
    "exception_for_status",
    "problem_document",
]


class ErrorItem(BaseModel):
    """One thing wrong with the input."""

    model_config = ConfigDict(frozen=True)

    loc: list[str | int] = Field(
        description='Where: ["body", "title"], ["query", "limit"], ["path", "id"]...'
    )
    msg: str = Field(description="What is wrong, for a person.")
    code: str = Field(description="What is wrong, for a program: missing, string_too_long...")


#: Validates all of a failure's items in one call (rather than one model each).
_ERROR_ITEMS: TypeAdapter[list[ErrorItem]] = TypeAdapter(list[ErrorItem])

#: An error item not yet made an :class:`ErrorItem`: ``{"loc": [...], "msg": ..., "code": ...}``
#: with a ``loc`` of ``str`` and ``int`` and a ``msg`` and ``code`` of ``str``.
RawErrorItem = dict[str, t.Any]


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="A stable URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong this time.")
    errors: list[ErrorItem] = Field(
        default_factory=list, description="One entry per bad input, when the input was wrong."
    )


class ApiException(Exception):
    """An error an API view raises to answer with a problem document.

    Subclasses set the defaults as class attributes, so a new kind of error is
    three lines::

        class QuotaExceeded(ApiException):
            status = 403
            slug = "quota-exceeded"
            title = "Quota exceeded"

    :param message: the ``detail`` of this occurrence; the class ``title`` when omitted.
    :param status: overrides the class ``status``.
    :param errors: per-input errors (``ErrorItem`` or ``(loc, msg, code)`` tuples).
    :param headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
    """

    #: The HTTP status code.
    status: int = 400
    #: The last part of the ``type`` URI; stable, part of the API contract.
    slug: str = "bad-request"
    #: The ``title``: the same for every occurrence of this kind of problem.
    title: str = "Bad request"

    def __init__(
        self,
        message: str | None = None,
        status: int | None = None,
        *,
        errors: Sequence[ErrorItem | tuple[Sequence[str | int], str, str]] = (),
        headers: t.Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.title
        if status is not None:
            self.status = status
        self._errors = [
            e if isinstance(e, ErrorItem) else ErrorItem(loc=list(e[0]), msg=e[1], code=e[2])
            for e in errors
        ]
        # Items given as plain dicts (see ValidationFailed.of_items), made
        # ErrorItems only when someone reads them: the default formatter
        # renders them as they are.
        self._raw_errors: list[RawErrorItem] | None = None
        self.headers = dict(headers or {})
        super().__init__(self.message)

    @property
    def errors(self) -> list[ErrorItem]:
        """One :class:`ErrorItem` per bad input (may be empty)."""
        if self._raw_errors is not None:
            self._errors = _ERROR_ITEMS.validator.validate_python(self._raw_errors)
            self._raw_errors = None
        return self._errors

    @errors.setter
    def errors(self, value: list[ErrorItem]) -> None:
        self._errors = value
        self._raw_errors = None

    def type_uri(self, base: str | None = None) -> str:
        """``base`` + :attr:`slug`; ``base`` is the app's ``PROBLEM_TYPE_BASE``
        when not given (which needs an app context)."""
        if base is None:
            base = CoreSettings.of().problem_type_base
        return f"{base}{self.slug}"


class MalformedJson(ApiException):
    status = 400
    slug = "malformed-json"
    title = "Malformed JSON"


class InvalidCursor(ApiException):
    """A pagination cursor, or an event stream's resume position, that
    cannot be used."""

    status = 400
    slug = "invalid-cursor"
    title = "Invalid cursor"


class Unauthorized(ApiException):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"


class Forbidden(ApiException):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ApiException):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ApiException):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class Conflict(ApiException):
    status = 409
    slug = "conflict"
    title = "Conflict"


class PayloadTooLarge(ApiException):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(ApiException):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class ValidationFailed(ApiException):
    """The input parsed but is not valid. Its status is the app's
    ``VALIDATION_ERROR_STATUS`` (422 by default, 400 for those who prefer it)."""

    status = 422
    slug = "validation-failed"
    title = "Validation failed"

    def __init__(
        self,
        message: str | None = None,
        status: int | None = None,
        *,
        errors: Sequence[ErrorItem | tuple[Sequence[str | int], str, str]] = (),
        headers: t.Mapping[str, str] | None = None,
    ) -> None:
        if status is None:
            status = CoreSettings.of().validation_error_status
        super().__init__(message, status, errors=errors, headers=headers)
        if message is None and self._errors:
            self.message = self.summary(self._errors)

    @classmethod
    def of_items(cls, items: list[RawErrorItem], status: int | None = None) -> ValidationFailed:
        """The exception for ``items``, error items as plain dicts
        (``{"loc": ["body", "title"], "msg": "...", "code": "missing"}``, a
        ``loc`` of strings and integers, a ``msg`` and ``code`` of strings):
        the same as ``ValidationFailed(errors=...)``, with :attr:`errors` made
        on first use. karaffe's input validation raises it this way, so that
        the problem document is written from the dicts as they are.

        .. versionadded:: 0.1 (issue 14)
        """
        exc = cls(status=status)
        if items:
            exc._raw_errors = items
            exc.message = _summary(item["loc"] for item in items)
        return exc

    @staticmethod
    def summary(errors: Sequence[ErrorItem]) -> str:
        """``2 inputs are invalid: body.title, query.limit.``"""
        return _summary(e.loc for e in errors)


def _summary(locs: t.Iterable[Sequence[str | int]]) -> str:
    places = list(dict.fromkeys(".".join(map(str, loc)) for loc in locs))
    count = "1 input is" if len(places) == 1 else f"{len(places)} inputs are"
    return f"{count} invalid: {', '.join(places)}."


class TooManyRequests(ApiException):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


class InternalServerError(ApiException):
    status = 500
    slug = "internal-server-error"
    title = "Internal server error"


class ServiceUnavailable(ApiException):
    """A service the request needs (the database...) cannot be reached now;
    the request may be retried later, after ``Retry-After`` seconds when the
    response says so. Nothing of the request was committed.

    karaffe answers a database outage with it (see :mod:`karaffe.db`).
    """

    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"


_BY_STATUS: dict[int, type[ApiException]] = {
    cls.status: cls
    for cls in (
        ApiException,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        TooManyRequests,
        InternalServerError,
        ServiceUnavailable,
    )
}


@functools.cache
def exception_for_status(status: int) -> type[ApiException]:
    """The exception class for an HTTP status; a generic one for others."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return type(
        f"HttpError{status}",
        (ApiException,),
        {"status": status, "slug": f"http-{status}", "title": f"HTTP error {status}"},
    )


def from_http_exception(exc: HTTPException) -> ApiException:
    """The API equivalent of a Werkzeug HTTP error (404 for an unknown URL, 405...)."""
    status = exc.code or 500
    cls = exception_for_status(status)
    # Only the body changes: what the error says in its headers (Allow,
    # WWW-Authenticate, Retry-After, Content-Range) is kept.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    # Werkzeug's descriptions are written for HTML pages ("If you entered the
    # URL manually please check your spelling"); the class title reads better.
    message = cls.title if status >= 500 else _first_sentence(exc.description) or cls.title
    return cls(message, status, headers=headers)


def _first_sentence(text: str | None) -> str:
    if not text:
        return ""
    return text.split(". ")[0].rstrip(".") + "."


def problem_document(exc: ApiException, *, type_base: str | None = None) -> Problem:
    """``exc`` as an RFC 9457 problem document: the one envelope.

    :class:`ProblemFormatter` renders every API error with it; the event
    relay, which serves requests without a Flask app, renders its refusals
    with it too, passing the app's ``PROBLEM_TYPE_BASE`` as ``type_base``
    (without it, the ``type`` is read from the current app's config).
    """
    return Problem(
        type=exc.type_uri(type_base),
        title=exc.title,
        status=exc.status,
        detail=exc.message,
        errors=exc.errors,
    )


class ProblemFormatter:
    """Turns an :class:`ApiException` into the response body. Replace it with
    ``app.problem_formatter = MyFormatter()`` to change the envelope everywhere:
    the OpenAPI components are built from :attr:`model`."""

    #: The body's schema, published in the OpenAPI document.
    model: type[BaseModel] = Problem
    #: The response's media type.
    mimetype: str = "application/problem+json"

    def render(self, exc: ApiException) -> BaseModel:
        return problem_document(exc)

    def to_response(self, exc: ApiException) -> Response:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        body = None
        if type(self).render is ProblemFormatter.render:
            body = _problem_json(exc, CoreSettings.of(app).problem_type_base)
        if body is None:
            document = self.render(exc)
            # The model's compiled serializer, as model_dump_json() calls it,
            # without its Python wrapper and the bytes decoded to a str.
            body = document.__pydantic_serializer__.to_json(document)
        response = app.response_class(body, status=exc.status, mimetype=self.mimetype)
        if exc.headers:
            response.headers.update(exc.headers)
        return response


def _problem_json(exc: ApiException, type_base: str) -> bytes | None:
    """The JSON of :func:`problem_document` for ``exc``, byte for byte, written
    by orjson from plain values, without building the models; or ``None``
    when a value is not of the plain type the model would check it is (the
    model then validates and writes it)."""
    raw = exc._raw_errors
    if raw is None and exc._errors:
        return None  # ErrorItems already made: their model writes them
    message, title, status = exc.message, exc.title, exc.status
    if not (
        type(message) is str
        and type(title) is str
        and type(status) is int
        and type(type_base) is str
        and type(exc.slug) is str
    ):
        return None
    document = {
        "type": type_base + exc.slug,
        "title": title,
        "status": status,
        "detail": message,
        "errors": raw or [],
    }
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        return None  # a lone surrogate, say: the model says what is wrong
