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

The rendered HTML of a text is cached (the same description is rendered for
every reader); the cache is bounded.
"""

from __future__ import annotations

import functools
import typing as t

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from markdown_it.renderer import RendererHTML
    from markdown_it.token import Token
    from markdown_it.utils import EnvType, OptionsDict

__all__ = ["render"]

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


def _image_as_link(tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """An image becomes a link to it, labelled with its alt text (or its
    address when it has none)."""
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = "".join(child.content for child in token.children or ()) or "image"
    title = token.attrGet("title")
    title_attr = f' title="{escape(title)}"' if title else ""
    return f'<a href="{escape(src)}"{title_attr}>Image: {escape(alt)}</a>'


def _parser() -> MarkdownIt:
    options = {"html": False, "breaks": True}
    md = MarkdownIt("commonmark", options).enable(["table", "strikethrough"])
    renderer = t.cast("RendererHTML", md.renderer)
    renderer.rules["image"] = _image_as_link  # type: ignore[assignment]
    return md


_MD = _parser()


@functools.lru_cache(maxsize=2048)
def _render(text: str) -> str:
    html = _MD.render(text)
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
    ).strip()


def render(text: str | None) -> Markup:
    """``text`` (Markdown) as safe HTML, ready for a template."""
    return Markup(_render(text or ""))
