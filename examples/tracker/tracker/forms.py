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

#: Friendlier wording for pydantic's most common messages in forms.
MESSAGES: dict[str, str] = {
    "missing": "This field is required.",
    "string_pattern_mismatch": "Enter a valid value.",
    "int_parsing": "Choose a valid option.",
    "literal_error": "Choose a valid option.",
    # Ids out of the database's range (karaffe.ids.Id).
    "greater_than_equal": "Choose a valid option.",
    "less_than_equal": "Choose a valid option.",
}


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
        """A person-readable message for one pydantic error; a field left
        blank is "required", whatever rule it broke first."""
        if blank and error["type"] != "extra_forbidden":
            return MESSAGES["missing"]
        return MESSAGES.get(error["type"], str(error["msg"]))
