"""What the tracker accepts and returns, as pydantic models.

The same models validate the HTML forms and the JSON API, so a title that is
too long is refused with the same rule, and the same message, on both.
``*In`` models are inputs, ``*Patch`` partial updates (only the fields sent
are changed: ``model_fields_set``), ``*Out`` what the API answers.
"""

from __future__ import annotations

import datetime as dt
import typing as t

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from karaffe.ids import Id

#: What ``str.strip()`` removes (``str.isspace``), spelled out so that every
#: regex engine (Python's, JavaScript's, Rust's) reads the class the same way.
SPACE = (
    r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680"
    r"\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: JSON Schema pattern of a text that is not blank: one character is not whitespace.
NOT_BLANK = f"[^{SPACE}]"


def _not_blank(value: str) -> str:
    """Surrounding whitespace dropped; nothing left is refused."""
    stripped = value.strip()
    if not stripped:
        raise PydanticCustomError(
            "string_too_short", "String should have at least 1 character", {"min_length": 1}
        )
    return stripped


def _line_schema(max_length: int) -> WithJsonSchema:
    """The documented shape of a :func:`_not_blank` text: what the API accepts
    as sent (its length counts the whitespace that is then dropped)."""
    return WithJsonSchema({"type": "string", "maxLength": max_length, "pattern": NOT_BLANK})


#: One line of text, such as a name or a title: at most so many characters as
#: sent, not blank; surrounding whitespace is dropped.
Title = t.Annotated[
    str, StringConstraints(max_length=200), AfterValidator(_not_blank), _line_schema(200)
]
Name = t.Annotated[
    str, StringConstraints(max_length=100), AfterValidator(_not_blank), _line_schema(100)
]
LabelName = t.Annotated[
    str, StringConstraints(max_length=50), AfterValidator(_not_blank), _line_schema(50)
]
Text = t.Annotated[str, StringConstraints(max_length=20_000)]
CommentText = t.Annotated[
    str, StringConstraints(max_length=10_000), AfterValidator(_not_blank), _line_schema(10_000)
]
Email = t.Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ),
]
Password = t.Annotated[str, StringConstraints(min_length=8, max_length=200)]


#: A timestamp as the API sends it: always with its UTC offset, since the
#: columns are :class:`karaffe.db.UTCDateTime`.
Timestamp = dt.datetime


def _absent_not_null(schema: dict[str, t.Any]) -> None:
    """In the JSON schema, a field of a partial update that may be left out
    but not sent as ``null`` (the API refuses it): the ``null`` option and the
    ``None`` default are dropped."""
    options = schema.pop("anyOf")
    schema.update(next(option for option in options if option != {"type": "null"}))
    schema.pop("default", None)


def _omittable(**kwargs: t.Any) -> t.Any:
    """A field of a ``*Patch`` model that is left alone when it is left out."""
    return Field(None, json_schema_extra=_absent_not_null, **kwargs)


Status = t.Literal["open", "closed"]
Role = t.Literal["owner", "admin", "member"]
InviteRole = t.Literal["admin", "member"]


class _In(BaseModel):
    """Inputs refuse fields they do not know, so a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- accounts -------------------------------------------------------------------


class SignupIn(_In):
    name: Name
    email: Email
    password: Password


class LoginIn(_In):
    email: Email
    password: t.Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordChangeIn(_In):
    current_password: t.Annotated[str, StringConstraints(min_length=1, max_length=200)]
    password: Password


class UserRef(_Out):
    """A user as others see them."""

    id: int
    name: str


class TokenIn(_In):
    """A new API token: what it is for, how long it works, what it may do."""

    name: Name
    expires: t.Literal["30", "90", "365", "never"] = Field(
        "90", description="Days it works, or never expires."
    )
    access: t.Literal["read", "write"] = Field(
        "read", description="`read`: GET only (read-only); `write`: every method."
    )


class TokenOut(_Out):
    id: int
    name: str
    created_at: Timestamp | None = None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown once, send it as `Authorization: Bearer`.")


# -- organizations ----------------------------------------------------------------


class OrganizationIn(_In):
    name: Name


class OrganizationOut(_Out):
    id: int
    name: str
    slug: str
    role: Role | None = Field(None, description="The caller's role in it.")


class MemberOut(_Out):
    user: UserRef
    role: Role


class RoleIn(_In):
    role: Role


class InvitationIn(_In):
    role: InviteRole = "member"


class InvitationOut(_Out):
    url: str = Field(description="The link to give to the person invited.")
    role: InviteRole
    expires_at: Timestamp


class LabelIn(_In):
    name: LabelName


class LabelOut(_Out):
    id: int
    name: str


# -- projects, issues, comments -----------------------------------------------------


class ProjectIn(_In):
    name: Name
    description: Text = ""


class ProjectPatch(_In):
    name: Name | None = None
    description: Text | None = None


class ProjectOut(_Out):
    id: int
    organization_id: int
    name: str
    description: str
    created_at: Timestamp


class IssueIn(_In):
    title: Title
    description: Text = ""
    assignee_id: Id | None = Field(None, description="A member of the project's organization.")
    label_ids: list[Id] = Field(default_factory=list, max_length=20)


class IssuePatch(_In):
    title: Title | None = _omittable()
    description: Text | None = _omittable()
    status: Status | None = _omittable()
    assignee_id: Id | None = Field(None, description="`null` unassigns.")
    label_ids: list[Id] | None = _omittable(max_length=20)


class IssueOut(_Out):
    id: int
    project_id: int
    title: str
    description: str
    status: Status
    assignee: UserRef | None
    author: UserRef | None
    labels: list[LabelOut]
    created_at: Timestamp
    updated_at: Timestamp


class IssueQuery(BaseModel):
    """Filters of an issue list; ``cursor`` and ``limit`` page through it."""

    status: Status | None = None
    assignee: Id | None = Field(None, description="A user id.")
    label: Id | None = Field(None, description="A label id.")
    q: t.Annotated[str, StringConstraints(max_length=200), AfterValidator(str.strip)] | None = (
        Field(None, description="Words the title contains.")
    )


class CommentIn(_In):
    body: CommentText


class CommentOut(_Out):
    id: int
    issue_id: int
    author: UserRef | None
    body: str
    created_at: Timestamp


#: A channel of live updates: ``project:<id>`` or ``issue:<id>``.
LiveChannel = t.Annotated[
    str,
    StringConstraints(pattern=r"^(project|issue):[1-9][0-9]{0,17}$"),
    Field(examples=["project:3"]),
]


class LiveTokenQuery(BaseModel):
    """The channels to follow (``channel`` repeated), 1 to 20."""

    channel: t.Annotated[list[LiveChannel], Field(min_length=1, max_length=20)]


class LiveTokenOut(BaseModel):
    """A channel token for the stream of live updates (see docs/events.md)."""

    token: str
    channels: list[str]
    expires_in: int = Field(description="Seconds the token is valid.")
    stream: str = Field(description="The URL of the event stream.")


class PresenceOut(BaseModel):
    """Who has an issue open (heartbeats expire after ``ttl`` seconds)."""

    users: list[UserRef]
    ttl: float = Field(description="Seconds a heartbeat counts; send one every third of it.")
