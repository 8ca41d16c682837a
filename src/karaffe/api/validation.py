"""Declared inputs and outputs for API views (slides 40-42).

Views stay plain Flask functions. Two decorators record what a view takes and
gives; the record (:class:`EndpointSpec`) is what validation runs on and what
the OpenAPI document is generated from::

    @blueprint.post("/items")
    @validate(body=ItemIn)
    @returns(ItemOut, status=201)
    def create_item(body: ItemIn) -> ItemOut:
        ...

``validate`` parses the request into the declared pydantic models and passes
them to the view as the keyword arguments ``body``, ``query`` and ``path``.
Errors are karaffe's, not pydantic's: malformed JSON is a 400, a body that is
not JSON a 415, a body over ``MAX_CONTENT_LENGTH`` a 413, and invalid input a 422
(``VALIDATION_ERROR_STATUS``) with one ``errors`` entry per bad field.

An :class:`~karaffe.api.errors.ApiException` raised while the input is parsed
or by the view (a 422, the 400 of a bad cursor...) is answered here, by
:meth:`karaffe.App.answer_api_exception`, rather than raised through Flask's
exception dispatch, when that dispatch would call karaffe's own handler
anyway; when a handler of the app's or a blueprint's would win, or the view is
wrapped by another decorator, it is raised as before.
"""

from __future__ import annotations

import functools
import types
import typing as t
from dataclasses import dataclass, field

from flask import current_app, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from .errors import (
    _ERROR_ITEMS,
    ApiException,
    ErrorItem,
    MalformedJson,
    RawErrorItem,
    UnsupportedMediaType,
    ValidationFailed,
)
from .result import ApiResult, RawJson

__all__ = ["EndpointSpec", "endpoint_spec", "returns", "validate", "validation_errors"]

View = t.Callable[..., t.Any]
#: What the decorators return: a view Flask's typing accepts, whatever the
#: decorated function returns (a model, a dict, ORM rows...).
DeclaredView = t.Callable[..., ResponseReturnValue]

_SPEC_ATTR = "__karaffe_endpoint__"
_WRAPPED_ATTR = "__karaffe_wrapped__"


@dataclass
class EndpointSpec:
    """What one API view declares. Read by validation and by OpenAPI."""

    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    response: t.Any = None
    status: int = 200
    paginated: bool = False
    #: The pages are counted (``paginate(..., with_total=True)``): the
    #: responses carry ``X-Total-Count`` and a ``rel="last"`` link.
    with_total: bool = False
    description: str | None = None
    #: Further error statuses the view answers with, and why (may be empty).
    extra_responses: dict[int, str] = field(default_factory=dict)
    #: URL arguments the response gives values for: ``{"project_id": "id"}``.
    links: dict[str, str] = field(default_factory=dict)
    _response_adapter: TypeAdapter[t.Any] | None = None

    def response_adapter(self) -> TypeAdapter[t.Any] | None:
        if self.response is None:
            return None
        if self._response_adapter is None:
            self._response_adapter = TypeAdapter(self.response)
        return self._response_adapter


def endpoint_spec(view: t.Callable[..., t.Any]) -> EndpointSpec | None:
    """The spec a view was declared with, or ``None`` for an undeclared view."""
    return getattr(view, _SPEC_ATTR, None)


def validation_errors(
    exc: PydanticValidationError, prefix: str, *, field_names: t.Mapping[str, str] | None = None
) -> list[ErrorItem]:
    """pydantic's errors as karaffe's ``ErrorItem``s, located under ``prefix``.

    The rejected input value is left out on purpose: it may be a password.
    """
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    valid: list[ErrorItem] = _ERROR_ITEMS.validator.validate_python(
        _raw_items(errors, prefix, field_names)
    )
    return valid


def _raw_items(
    errors: t.Iterable[t.Any], prefix: str, field_names: t.Mapping[str, str] | None = None
) -> list[RawErrorItem]:
    """pydantic's error dicts as error items (plain dicts) located under ``prefix``."""
    items = []
    for error in errors:
        loc = [prefix, *error["loc"]]
        if field_names and len(loc) > 1 and isinstance(loc[1], str):
            loc[1] = field_names.get(loc[1], loc[1])
        items.append({"loc": loc, "msg": error["msg"], "code": error["type"]})
    return items


def _failed(exc: PydanticValidationError, prefix: str) -> ValidationFailed:
    """The 422 of a failed validation: its items are made ErrorItems only if read."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return ValidationFailed.of_items(_raw_items(errors, prefix))


def _is_multi(annotation: t.Any) -> bool:
    origin = t.get_origin(annotation)
    if origin in (t.Union, types.UnionType):
        return any(_is_multi(arg) for arg in t.get_args(annotation) if arg is not type(None))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)


@functools.cache
def _query_plan(model: type[BaseModel]) -> tuple[tuple[tuple[str, bool], ...], bool]:
    """For each field, its query parameter name and whether it repeats; and
    whether unknown parameters should reach the model (``extra="forbid"``)."""
    plan = tuple(
        (info.alias or name, _is_multi(info.annotation))
        for name, info in model.model_fields.items()
    )
    return plan, model.model_config.get("extra") == "forbid"


def parse_query(model: type[BaseModel], args: MultiDict[str, str]) -> BaseModel:
    """Validate query parameters into ``model`` (a 422 on failure)."""
    plan, pass_all = _query_plan(model)
    data: dict[str, t.Any] = {}
    for name, multi in plan:
        if name in args:
            data[name] = args.getlist(name) if multi else args[name]
    if pass_all:
        for name in args:
            data.setdefault(name, args[name])
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise _failed(exc, "query") from None


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def parse_body(model: type[BaseModel]) -> BaseModel:
    """Validate the JSON request body into ``model``.

    415 when the body is not declared as JSON, 413 past ``MAX_CONTENT_LENGTH``
    (raised by Werkzeug while reading), 400 when it is not well-formed JSON,
    422 when it does not fit the model.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]
    # The usual header as it is, before Werkzeug parses it into a mimetype.
    if req.environ.get("CONTENT_TYPE") != "application/json" and not _is_json(req.mimetype):
        got = req.mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"Expected a JSON body (application/json), got {got}.")
    data = req.get_data(cache=True)
    try:
        return model.model_validate_json(data)
    except PydanticValidationError as exc:
        # The errors without their context (an error item has none), but
        # for malformed JSON, whose context says what is wrong.
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if errors and errors[0]["type"] == "json_invalid":
            first = exc.errors(include_url=False, include_input=False)[0]
            reason = first.get("ctx", {}).get("error", "invalid JSON")
            raise MalformedJson(f"The request body is not valid JSON: {reason}.") from None
        raise ValidationFailed.of_items(_raw_items(errors, "body")) from None


def _declared(view: View) -> tuple[DeclaredView, EndpointSpec]:
    """The view's single validating wrapper and its spec, made on first use.

    Whichever of :func:`validate` and :func:`returns` comes first installs the
    wrapper; the wrapper reads the spec when called, so their order is free.
    """
    if getattr(view, _WRAPPED_ATTR, False):
        return view, t.cast(EndpointSpec, endpoint_spec(view))
    spec = EndpointSpec()

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> ResponseReturnValue:
        try:
            if spec.path is not None:
                try:
                    kwargs = {"path": spec.path.model_validate(kwargs)}
                except PydanticValidationError as exc:
                    raise _failed(exc, "path") from None
            if spec.query is not None:
                kwargs["query"] = parse_query(spec.query, request.args)
            if spec.body is not None:
                kwargs["body"] = parse_body(spec.body)
            return _finish(spec, view(*args, **kwargs))  # type: ignore[no-any-return]
        except ApiException as exc:
            answer = getattr(current_app, "answer_api_exception", None)
            response = None if answer is None else answer(exc, wrapper)
            if response is None:
                raise
            return response  # type: ignore[no-any-return]

    setattr(wrapper, _SPEC_ATTR, spec)
    setattr(wrapper, _WRAPPED_ATTR, True)
    return wrapper, spec


def validate(
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    path: type[BaseModel] | None = None,
) -> t.Callable[[View], DeclaredView]:
    """Parse the request into pydantic models before the view runs.

    The view gets the parsed models as the keyword arguments ``body``, ``query``
    and ``path`` (``path`` replaces the URL's own arguments). If the view
    returns a bare value rather than a response, it is wrapped in
    :class:`ApiResult` with the status declared by :func:`returns`.
    """

    def decorator(view: View) -> DeclaredView:
        wrapper, spec = _declared(view)
        spec.body, spec.query, spec.path = body, query, path
        return wrapper

    return decorator


def _finish(spec: EndpointSpec, rv: t.Any) -> t.Any:
    """Wrap what a declared view returned: a bare value becomes an ApiResult,
    serialized through the declared response model."""
    if isinstance(rv, ApiResult):
        if rv.page is not None and (rv.page.total is not None) != spec.with_total:
            # The OpenAPI document says whether X-Total-Count is sent: keep them equal.
            raise TypeError(
                "the view is declared with returns(..., with_total="
                f"{spec.with_total}) but its page was paginated with "
                f"with_total={rv.page.total is not None}"
            )
        if spec.response is not None and rv.value is not None:
            rv.value = _coerce(spec, rv.value)
        return rv
    if isinstance(rv, tuple | BaseResponse):
        return rv
    value = _coerce(spec, rv) if spec.response is not None else rv
    return ApiResult(value, status=spec.status)


def _coerce(spec: EndpointSpec, value: t.Any) -> t.Any:
    """Shape ``value`` (ORM objects, dicts, models) into the declared response
    type, so what is sent is exactly what is documented."""
    response = spec.response
    if isinstance(value, RawJson) or (isinstance(response, type) and isinstance(value, response)):
        return value
    adapter = spec.response_adapter()
    assert adapter is not None
    # The adapter's compiled validator and serializer, as its
    # validate_python() and dump_json() call them, without their wrappers.
    valid = adapter.validator.validate_python(value, from_attributes=True)
    return RawJson(adapter.serializer.to_json(valid))


def returns(
    response: t.Any,
    status: int = 200,
    *,
    paginated: bool = False,
    with_total: bool = False,
    description: str | None = None,
    errors: t.Mapping[int, str] | t.Iterable[int] | None = None,
    links: t.Mapping[str, str] | None = None,
) -> t.Callable[[View], DeclaredView]:
    """Declare what a view returns: ``response`` is a pydantic model or a type
    such as ``list[ItemOut]``; ``paginated`` documents the ``Link`` header and
    the ``cursor``/``limit`` parameters, ``with_total`` the ``X-Total-Count``
    header of a view that pages with ``paginate(..., with_total=True)`` (the
    two must agree: a mismatch is a ``TypeError`` when the view returns);
    ``errors`` documents the error statuses the view itself answers with,
    with the reason (``{409: "The name is taken"}``) or without
    (``(403, 409)``). The statuses karaffe knows of (401 behind
    ``login_required``, 404 for URL arguments, 400/413/415/422 for input) are
    documented without being declared. ``links`` names the URL arguments
    the response gives values for, and the field holding each:
    ``{"project_id": "id"}`` links the response (OpenAPI ``links``) to every
    documented operation with a ``project_id`` in its URL, which clients and
    stateful testers follow. Only records: validation of output happens when
    the view returns a value that is not already the model."""
    declared = dict(errors) if isinstance(errors, t.Mapping) else dict.fromkeys(errors or (), "")

    def decorator(view: View) -> DeclaredView:
        wrapper, spec = _declared(view)
        spec.response, spec.status, spec.paginated = response, status, paginated
        spec.with_total = with_total
        spec.description = description
        spec.extra_responses.update(declared)
        spec.links.update(links or {})
        return wrapper

    return decorator
