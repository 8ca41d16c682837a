"""HTML forms validated by the same pydantic models as the API.

A :class:`Form` holds what the user typed (``data``, re-rendered into the
fields so nothing is lost) and one message per bad field (``errors``, shown
next to the field)::

    form = Form.from_request(IssueIn, multi={"label_ids"})
    issue_in = form.validate(IssueIn)
    if issue_in is None:
        return render_template("issues/new.html", form=form), 422
"""

from __future__ import annotations

import typing as t
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flask import request
from markupsafe import Markup
from pydantic import BaseModel, ValidationError

M = t.TypeVar("M", bound=BaseModel)

#: What forms say for each kind of error, in one place: pydantic's error
#: types, and the ``slug`` of a refusal such as the login throttle's.
#: ``{label}`` is the field as the form names it (:data:`LABELS`); other
#: placeholders come from the error's context (``{min_length}``) or, for
#: ``{wait}``, from its ``Retry-After``.
MESSAGES: dict[str, str] = {
    "missing": "This field is required.",
    "string_too_short": "{label} must be at least {min_length} characters.",
    "string_too_long": "{label} must be at most {max_length} characters.",
    "too_long": "Choose at most {max_length}.",
    "string_pattern_mismatch": "{label} is not valid here.",
    "string_type": "{label} must be text.",
    "int_parsing": "Choose a valid option.",
    "literal_error": "Choose a valid option.",
    "list_type": "Choose a valid option.",
    # Ids out of the database's range (karaffe.ids.Id).
    "greater_than_equal": "Choose a valid option.",
    "less_than_equal": "Choose a valid option.",
    "extra_forbidden": "This form does not have a field called {field}.",
    "too-many-failed-logins": "Too many attempts; try again in {wait}.",
}

#: Where one field needs its own wording for an error type.
FIELD_MESSAGES: dict[tuple[str, str], str] = {
    ("email", "string_pattern_mismatch"): "Enter an email address, such as name@example.com.",
}

#: Field names as people read them, where capitalizing the name is not enough.
LABELS: dict[str, str] = {
    "body": "Comment",
    "current_password": "Current password",
    "assignee_id": "Assignee",
    "label_ids": "Labels",
}


def label_of(field: str) -> str:
    return LABELS.get(field) or field.replace("_", " ").capitalize()


def wait_words(seconds: int) -> str:
    """``898`` -> ``"15 minutes"``; ``40`` -> ``"40 seconds"``: rounded up,
    so that trying again then works."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = -(-minutes // 60)
    return f"{hours} hours"


def refusal_message(slug: str, default: str, retry_after: str | None = None) -> str:
    """What a form says for a refusal (an :class:`karaffe.ApiException` of
    ``slug``): the :data:`MESSAGES` entry, else the exception's own."""
    template = MESSAGES.get(slug)
    if template is None:
        return default
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else 60
    return template.format(wait=wait_words(seconds))


class FieldError(Exception):
    """A domain rule refused a field's value (an assignee who is not a member,
    a label of another organization). Views turn it into a form error or an
    API validation error located at the field."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


@dataclass
class Form:
    """What was submitted and what is wrong with it."""

    data: dict[str, t.Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: The rendered Markdown of a field, when Preview submitted the form.
    preview: Markup | None = None

    @classmethod
    def from_request(cls, model: type[BaseModel], *, multi: Iterable[str] = ()) -> Form:
        """The fields of ``model`` from ``request.form``; fields in ``multi``
        are lists (a multiple ``<select>``)."""
        multi = set(multi)
        data: dict[str, t.Any] = {}
        for name in model.model_fields:
            if name in multi:
                data[name] = request.form.getlist(name)
            elif name in request.form:
                data[name] = request.form[name]
        return cls(data=data)

    def validate(self, model: type[M], *, blank_is_none: Iterable[str] = ()) -> M | None:
        """``model`` from :attr:`data`, or ``None`` with :attr:`errors` filled.

        Fields in ``blank_is_none`` (an optional ``<select>``) read an empty
        string as "not set".
        """
        values = dict(self.data)
        for name in blank_is_none:
            if values.get(name) == "":
                values[name] = None
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                name = str(error["loc"][0]) if error["loc"] else "__all__"
                blank = str(values.get(name) or "").strip() == ""
                self.errors.setdefault(name, self.message(error, blank=blank))
            return None

    def add_error(self, error: FieldError) -> None:
        self.errors[error.field] = error.message

    @staticmethod
    def message(error: Mapping[str, t.Any], *, blank: bool = False) -> str:
        """A person-readable message for one pydantic error (from
        :data:`FIELD_MESSAGES` or :data:`MESSAGES`); a field left blank is
        "required", whatever rule it broke first."""
        kind = str(error["type"])
        if blank and kind != "extra_forbidden":
            return MESSAGES["missing"]
        field = str(error["loc"][0]) if error.get("loc") else ""
        template = FIELD_MESSAGES.get((field, kind)) or MESSAGES.get(kind)
        if template is None:
            return str(error["msg"])
        try:
            return template.format(label=label_of(field), field=field, **error.get("ctx", {}))
        except (KeyError, IndexError):
            return str(error["msg"])
