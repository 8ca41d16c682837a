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
    ModelWrapValidatorHandler,
    PlainValidator,
    PrivateAttr,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    computed_field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from karaffe.ids import Id

from . import markdown, mentions
from .labels import COLOR_PATTERN, normalize_color

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


def _color(value: str) -> str:
    try:
        return normalize_color(value)
    except ValueError as exc:
        raise PydanticCustomError("color", str(exc)) from None


#: A label's colour: ``#`` and six hex digits, stored lower-case.
Color = t.Annotated[
    str,
    AfterValidator(_color),
    WithJsonSchema({"type": "string", "pattern": COLOR_PATTERN, "examples": ["#d73a4a"]}),
]
CommentText = t.Annotated[
    str, StringConstraints(max_length=10_000), AfterValidator(_not_blank), _line_schema(10_000)
]
Email = t.Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        max_length=254,
        # SPACE, not \s: Python's \s and the JSON Schema (ECMA) one differ (U+0085, U+001C).
        pattern=f"^[^@{SPACE}]+@[^@{SPACE}]+\\.[^@{SPACE}]+$",
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
#: A list's status filter: the pages link to ``status=all``, and the API
#: takes what they link to.
StatusFilter = t.Literal["open", "closed", "all"]
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


CurrentPassword = t.Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordChangeIn(_In):
    current_password: CurrentPassword
    password: Password


class PasswordForgottenIn(_In):
    email: Email


class PasswordResetIn(_In):
    """The new password, on the page a reset link opens."""

    password: Password


class PasswordResetConfirmIn(_In):
    """A reset link's token and the new password (the API's form of the page)."""

    token: t.Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="The `token` of the link mailed: `/password/reset/<token>`."
    )
    password: Password


class EmailVerificationIn(_In):
    token: t.Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="The `token` of the link mailed: `/verify-email/<token>`."
    )


class ProfileIn(_In):
    name: Name


class EmailChangeIn(_In):
    """A new login address (it becomes the login once its link is followed)."""

    email: Email
    current_password: CurrentPassword


class Accepted(_Out):
    """An action accepted, whose result arrives later (by mail)."""

    detail: str


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
    color: Color | None = Field(
        None, description="Its background, `#rrggbb`; one from a palette when left out."
    )


class LabelPatch(_In):
    name: LabelName | None = _omittable()
    color: Color | None = _omittable()


class LabelOut(_Out):
    id: int
    name: str
    color: str = Field(description="The background, `#rrggbb`.")
    text_color: str = Field(
        description="`#000000` or `#ffffff`, whichever contrasts more with `color` "
        "(at least 4.5:1, WCAG AA)."
    )


# -- projects, issues, comments -----------------------------------------------------


#: A project's key: a letter, then letters or digits (``BIL``, ``WEB2``), in capitals.
ProjectKey = t.Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z][A-Za-z0-9]{1,9}$"),
    AfterValidator(str.upper),
]


class ProjectIn(_In):
    name: Name
    description: Text = ""
    key: ProjectKey | None = Field(
        None,
        description="Prefix of its issues' keys (`BIL` for `BIL-123`): 2 to 10 capitals or "
        "digits, unique in the organization; made from the name when left out. It never changes.",
    )


class ProjectPatch(_In):
    name: Name | None = None
    description: Text | None = None


class ProjectOut(_Out):
    id: int
    organization_id: int
    name: str
    key: str
    description: str
    created_at: Timestamp
    open_issue_count: int
    closed_issue_count: int


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


class _Rendered(_Out):
    """An answer with its Markdown field (``_markdown``) rendered as the
    pages render it: with the ``@handle`` of a member of the organization
    of the object it was made from linked to them
    (:func:`tracker.mentions.render`). It is rendered when the answer is
    made, before the view commits: rendering may read the members."""

    _markdown: t.ClassVar[str]
    _html: str = PrivateAttr("")

    @model_validator(mode="wrap")
    @classmethod
    def _render(cls, data: t.Any, handler: ModelWrapValidatorHandler[t.Any]) -> t.Any:
        out = handler(data)
        if isinstance(out, _Rendered):
            org_id = (
                data.get("organization_id")
                if isinstance(data, dict)
                else getattr(data, "organization_id", None)
            )
            text = getattr(out, out._markdown)
            html = (
                mentions.render(text, org_id) if isinstance(org_id, int) else markdown.render(text)
            )
            out._html = str(html)
        return out


class IssueOut(_Rendered):
    _markdown = "description"
    id: int
    key: str = Field(description="The project's key and the issue's number: `BIL-123`.")
    number: int = Field(description="Its number in the project, from 1.")
    project_id: int
    title: str
    description: str = Field(description="Markdown, as written.")
    status: Status
    assignee: UserRef | None
    author: UserRef | None
    labels: list[LabelOut]
    created_at: Timestamp
    updated_at: Timestamp
    comment_count: int

    @computed_field(description="`description` rendered to sanitized HTML.")  # type: ignore[prop-decorator]
    @property
    def description_html(self) -> str:
        return self._html


def _user_or_me(value: t.Any) -> t.Any:
    """``me`` as is; anything else must be a user id."""
    return value if value == "me" else _USER_ID.validate_python(value)


_USER_ID: TypeAdapter[int] = TypeAdapter(Id)

#: A user in a filter: their id, or ``me`` for the caller.
UserFilter = t.Annotated[
    int | str,
    PlainValidator(_user_or_me),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "me"}]}),
]

Sort = t.Literal["created", "updated", "comments", "relevance"]
Direction = t.Literal["asc", "desc"]


class IssueQuery(BaseModel):
    """Filters and order of an issue list; ``cursor`` and ``limit`` page through it."""

    status: StatusFilter | None = Field(
        None, description="`open`, `closed`, or `all` (the default here; the page's is `open`)."
    )
    assignee: UserFilter | None = Field(None, description="A user id, or `me`.")
    author: UserFilter | None = Field(None, description="Who created it: a user id, or `me`.")
    label: list[Id] = Field(
        default_factory=list,
        max_length=10,
        description="Label ids; repeat it (`label=1&label=2`) for issues with all of them.",
    )
    q: t.Annotated[str, StringConstraints(max_length=200), AfterValidator(str.strip)] | None = (
        Field(
            None,
            description="Words searched in the title, description and comments (every word, "
            "as a prefix, stemmed).",
        )
    )
    sort: Sort | None = Field(
        None,
        description="`created` (the default without `q`), `updated`, `comments` (how many), "
        "or `relevance` (the default with `q`, which it needs; the 1,000 best matches, "
        "best first).",
    )
    direction: Direction = Field(
        "desc", description="`desc` (the default) or `asc`; relevance is always best first."
    )


class OrgIssueQuery(IssueQuery):
    """An organization's issues: the filters of a project's list, and the project."""

    project: Id | None = Field(None, description="A project id.")


class CommentIn(_In):
    body: CommentText
    status: Status | None = Field(
        None, description="Also close or reopen the issue, in the same write."
    )


class CommentPatch(_In):
    body: CommentText


class CommentOut(_Rendered):
    _markdown = "body"
    id: int
    issue_id: int
    author: UserRef | None
    body: str = Field(description="Markdown, as written.")
    created_at: Timestamp
    edited_at: Timestamp | None = Field(description="When its text last changed, if ever.")

    @computed_field(description="`body` rendered to sanitized HTML.")  # type: ignore[prop-decorator]
    @property
    def body_html(self) -> str:
        return self._html


class MarkdownIn(_In):
    text: Text
    org: t.Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None,
        description="The slug of one of your organizations: `@handle` of its members "
        "becomes a link, as on its pages. Without it, mentions stay text.",
    )


class MarkdownOut(_Out):
    html: str = Field(description="`text` rendered to sanitized HTML, as the pages show it.")


# -- activity, notifications, mentions (see tracker.activity) ------------------------

ActivityKind = t.Literal[
    "created", "title", "description", "status", "assignee", "labels", "comment"
]
Reason = t.Literal["mentioned", "assigned", "watching"]


class ActivityOut(_Out):
    """One change to an issue."""

    id: int
    issue_id: int
    kind: ActivityKind
    actor: UserRef | None
    detail: dict[str, t.Any] = Field(
        description='By kind: `{"from", "to"}` for `title` and `status`; `{"from", "to"}` '
        "users (`{id, name}` or null) for `assignee`; `{added, removed}` label names for "
        '`labels`; `{"comment_id"}` for `comment`; `mentions`: ids of the members it mentioned.'
    )
    created_at: Timestamp


class IssueRef(_Out):
    id: int
    project_id: int
    title: str
    status: Status


class NotificationOut(_Out):
    """An activity that concerns the caller, and why."""

    id: int
    reason: Reason = Field(
        description="`mentioned`, `assigned`, or `watching` (a comment or a status change "
        "on an issue the caller watches)."
    )
    read: bool
    created_at: Timestamp
    read_at: Timestamp | None
    issue: IssueRef
    activity: ActivityOut


class NotificationQuery(BaseModel):
    """Which notifications; ``cursor`` and ``limit`` page through them."""

    unread: bool = Field(False, description="Only the unread ones.")


class UnreadOut(_Out):
    unread: int = Field(description="How many notifications the caller has not read.")


class MarkedOut(_Out):
    marked: int = Field(description="How many notifications were unread and now are read.")


class WatchOut(_Out):
    watching: bool


class MentionQuery(BaseModel):
    q: t.Annotated[str, StringConstraints(max_length=60)] = Field(
        "", description="The start of a handle or of a name (`@` optional)."
    )


class MentionableOut(_Out):
    """A member that ``@handle`` mentions."""

    id: int
    name: str
    handle: str


# -- live pages (see tracker.live) ----------------------------------------------------

#: A channel of live updates: ``project:<id>``, ``issue:<id>`` or ``user:<id>``.
LiveChannel = t.Annotated[
    str,
    StringConstraints(pattern=r"^(project|issue|user):[1-9][0-9]{0,17}$"),
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
