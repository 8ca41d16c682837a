"""Markdown for issue descriptions and comments: CommonMark, made safe.

Two layers, each enough alone for what it covers:

1. markdown-it-py parses CommonMark (plus tables and ~~strikethrough~~;
   a line break is a line break, as in the plain text the tracker stored
   before, and as on GitHub) with raw HTML turned off: ``<script>`` in a
   comment is shown as text, and it refuses link targets with
   ``javascript:``, ``vbscript:``, ``file:`` and ``data:`` schemes.
2. nh3 (ammonia) cleans the output against an allow-list of tags,
   attributes and URL schemes (``http``, ``https``, ``mailto`` and relative
   links), so a parser bug or a renderer rule added later cannot let
   anything else through.

Images are shown as links to the image, not loaded: an image in a comment
would otherwise be fetched from any host by every reader's browser, telling
that host who read the issue and when (a tracking pixel), and could be
swapped for something else after review. The reader decides whether to open
it. Links get ``rel="nofollow noopener"`` (no search-engine credit for spam,
no ``window.opener`` for the target) and open in a new tab, so a half-written
comment is not lost by following one.

``@handle`` mentions a member (see :mod:`tracker.mentions`): given the
organization's handles, the parser turns a known one into a link to the
member (``<a class="mention">``); an unknown one, or one inside code, stays
text. The same parse tells the services whom a text mentions.

The rendered HTML of a text is cached (the same description is rendered for
every reader); the cache is bounded.
"""

from __future__ import annotations

import functools
import re
import typing as t
from collections.abc import Mapping

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from markdown_it.renderer import RendererHTML
    from markdown_it.rules_inline import StateInline
    from markdown_it.token import Token
    from markdown_it.utils import EnvType, OptionsDict

__all__ = ["may_mention", "mentions", "render"]

#: What the rendered HTML may contain, and nothing else.
TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}
URL_SCHEMES = {"http", "https", "mailto"}
#: Alignment of table columns is the only style markdown-it writes.
STYLE_PROPERTIES = {"text-align"}
LINK_REL = "nofollow noopener"
#: A handle after ``@``: letters, digits, ``.``, ``_``, ``-``, not ending in punctuation.
HANDLE = re.compile(r"@([a-z0-9](?:[a-z0-9._-]*[a-z0-9])?)", re.IGNORECASE)
#: A mention starts a word: ``bob@acme.com`` mentions nobody.
_WORD = re.compile(r"[a-z0-9._+-]", re.IGNORECASE)


def _image_as_link(tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """An image becomes a link to it, labelled with its alt text (or its
    address when it has none)."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = "".join(child.content for child in token.children or ()) or "image"
    title = token.attrGet("title")
    title_attr = f' title="{escape(title)}"' if title else ""
    return f'<a href="{escape(src)}"{title_attr}>Image: {escape(alt)}</a>'


def _mention(state: StateInline, silent: bool) -> bool:
    """``@handle`` of a member (``env["mentions"]`` has it) becomes a
    ``mention`` token."""
    if state.src[state.pos] != "@":
        return False
    if state.pos > 0 and _WORD.match(state.src[state.pos - 1]):
        return False
    match = HANDLE.match(state.src, state.pos)
    known = state.env.get("mentions") if isinstance(state.env, dict) else None
    if match is None or not known or match.group(1).lower() not in known:
        return False
    if not silent:
        token = state.push("mention", "", 0)
        token.meta = {"handle": match.group(1).lower()}
        token.content = match.group(0)
    state.pos = match.end()
    return True


def _render_mention(tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    handle = tokens[idx].meta["handle"]
    href = env["mentions"][handle]
    return f'<a class="mention" href="{escape(href)}">@{escape(handle)}</a>'


def _parser() -> MarkdownIt:
    options = {"html": False, "breaks": True}
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough"])
    renderer = t.cast("RendererHTML", md.renderer)
    renderer.rules["image"] = _image_as_link  # type: ignore[assignment]
    renderer.rules["mention"] = _render_mention  # type: ignore[assignment]
    md.inline.ruler.before("emphasis", "mention", _mention)
    return md


_MD = _parser()


@functools.lru_cache(maxsize=2048)
def _render(text: str, links: tuple[tuple[str, str], ...] = ()) -> str:
    html = _MD.render(text, {"mentions": dict(links)} if links else {})
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        allowed_classes={"a": {"mention"}},
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
    ).strip()


def _known(text: str, handles: Mapping[str, t.Any]) -> list[str]:
    return sorted({h.lower() for h in HANDLE.findall(text)} & set(handles))


def may_mention(text: str | None) -> bool:
    """Whether ``text`` has an ``@handle`` at all (a cheap test before
    reading who the members are)."""
    return bool(text) and "@" in t.cast(str, text) and HANDLE.search(t.cast(str, text)) is not None


def render(text: str | None, mentions: Mapping[str, str] | None = None) -> Markup:
    """``text`` (Markdown) as safe HTML, ready for a template; ``mentions``
    (``{handle: url}``) links the ``@handle`` of members."""
    text = text or ""
    if not mentions:
        return Markup(_render(text))
    links = tuple((h, mentions[h]) for h in _known(text, mentions))
    return Markup(_render(text, links))


def mentions(text: str, handles: Mapping[str, t.Any]) -> list[str]:
    """The handles among ``handles`` that ``text`` mentions, in order (a
    handle in code or in an email address is not a mention)."""
    known = _known(text, handles)
    if not known:
        return []
    found: list[str] = []

    def walk(tokens: Sequence[Token]) -> None:
        for token in tokens:
            if token.type == "mention":
                found.append(token.meta["handle"])
            if token.children:
                walk(token.children)

    walk(_MD.parse(text, {"mentions": dict.fromkeys(known, "")}))
    return found
