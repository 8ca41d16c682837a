"""HTML escaping: user text such as ``<script>alert(1)</script>`` renders
inert on every page it appears on, in text, attributes and embedded JSON;
Markdown (descriptions, comments) renders to HTML that holds only allowed
tags, attributes and link schemes, on the pages, in the API and in the
preview."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from tracker import markdown
from tracker.models import Comment, Issue, Label, Project

from karaffe.tenancy import Organization, unscoped

XSS = "<script>alert(1)</script>"
QUOTES = "\"'><img src=x onerror=alert(2)>"


@pytest.fixture
def hostile(app, world, db):
    """Every name and text of Acme's data set to markup."""
    with app.app_context(), unscoped("test: hostile names"):
        db.session.execute(
            sa.update(Issue)
            .where(Issue.id == world.issues["first"])
            .values(title=XSS, description=XSS + QUOTES)
        )
        db.session.execute(
            sa.update(Project).where(Project.id == world.projects["website"]).values(name=XSS)
        )
        db.session.execute(sa.update(Label).where(Label.id == world.labels["bug"]).values(name=XSS))
        db.session.execute(
            sa.update(Organization).where(Organization.id == world.orgs["acme"]).values(name=QUOTES)
        )
        db.session.add(
            Comment(
                organization_id=world.orgs["acme"],
                issue_id=world.issues["first"],
                author_id=world.users["bob"],
                body=XSS,
            )
        )
        db.session.commit()
    return world


PAGES = [
    "/",
    "/o/acme/",
    "/o/acme/members",
    "/o/acme/labels",
    "/o/acme/projects/{website}",
    "/o/acme/projects/{website}?status=all&q=script",
    "/o/acme/projects/{website}/edit",
    "/o/acme/projects/{website}/delete",
    "/o/acme/projects/{website}/issues/new",
    "/o/acme/issues/{first}",
    "/o/acme/issues/{first}/edit",
    "/o/acme/issues/{first}/delete",
    # the fragments live pages fetch
    "/o/acme/projects/{website}/row?id={first}&status=all",
    "/o/acme/issues/{first}/parts",
]


@pytest.mark.parametrize("path", PAGES)
def test_markup_in_user_text_is_escaped(login, hostile, path):
    url = path.format(website=hostile.projects["website"], first=hostile.issues["first"])
    rv = login("bob").get(url)  # an admin: every action is offered
    assert rv.status_code == 200
    page = rv.get_data(as_text=True)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    # ...and the hostile text is there, escaped: the test saw it.
    shown = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x", "\\u003cscript")
    assert any(text in page for text in shown)


def test_embedded_json_is_escaped_and_reads_back(login, hostile):
    rv = login("dave").get(f"/o/acme/issues/{hostile.issues['first']}")
    page = rv.get_data(as_text=True)
    raw = re.search(r"data-issue='([^']*)'", page).group(1)
    assert "<" not in raw and ">" not in raw and "'" not in raw
    # The browser decodes the attribute (only &quot; and friends matter), then JSON.
    decoded = json.loads(raw.replace("&#34;", '"').replace("&quot;", '"'))
    assert decoded["title"] == XSS
    assert decoded["description"] == XSS + QUOTES


def test_search_box_echo_is_escaped(login, world):
    rv = login("dave").get(f"/o/acme/projects/{world.projects['website']}?q=%22%3E%3Cscript%3E")
    page = rv.get_data(as_text=True)
    assert '"><script>' not in page
    assert 'value="&#34;&gt;&lt;script&gt;"' in page


def test_api_returns_text_as_data(api, hostile):
    rv = api("dave").get(f"/api/v1/issues/{hostile.issues['first']}")
    assert rv.mimetype == "application/json"
    assert rv.get_json()["title"] == XSS


# -- Markdown ---------------------------------------------------------------------------
# Descriptions and comments are Markdown (tracker.markdown). Whatever is
# written, the HTML the pages and the API give out holds only the allowed
# tags, no event handler, no style, and links only to http(s), mailto or
# relative addresses, with rel="nofollow noopener".

ALLOWED_TAGS = set(markdown.TAGS)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Collect()
    parser.feed(html)
    parser.close()
    return parser.tags


def assert_inert(html: str) -> None:
    for tag, attrs in elements(html):
        assert tag in ALLOWED_TAGS, (tag, html)
        for name, value in attrs.items():
            assert not name.startswith("on"), (name, html)
            assert name != "style" or tag in ("th", "td"), html
            if name == "style":
                assert re.fullmatch(r"text-align:(left|right|center)", value or ""), html
        if tag == "a":
            assert attrs["rel"] == "nofollow noopener", html
            assert attrs["target"] == "_blank", html
            href = (attrs.get("href") or "").strip().lower()
            assert not href or re.match(r"(https?:|mailto:|/|#|\?|[^:/?#]+(/|$))", href), html


#: (Markdown written, HTML that must appear, text that must not appear)
MARKDOWN_CASES = {
    "javascript link": ("[click](javascript:alert(1))", "[click](javascript:alert(1))", "<a"),
    "javascript link, mixed case": ("[x](JaVaScRiPt:alert(1))", "[x](", "<a"),
    "javascript link, entity-encoded": ("[x](&#106;avascript:alert(1))", "[x](", "<a"),
    "javascript link, in angle brackets": ("[x](<javascript:alert(1)>)", "[x](", "<a"),
    "vbscript link": ("[x](vbscript:msgbox(1))", "[x](vbscript:", "<a"),
    "data link": ("[x](data:text/html;base64,PHNjcmlwdD4=)", "[x](data:", "<a"),
    "javascript autolink": ("<javascript:alert(1)>", "&lt;javascript:alert(1)&gt;", "<a"),
    "javascript reference link": (
        "[x][evil]\n\n[evil]: javascript:alert(1)",
        "[x][evil]",
        "<a",
    ),
    "script tag": ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;", "<script"),
    "img with onerror": (
        "<img src=x onerror=alert(2)>",
        "&lt;img src=x onerror=alert(2)&gt;",
        "<img",
    ),
    "iframe": ('<iframe src="https://evil.example/"></iframe>', "&lt;iframe", "<iframe"),
    "style": ("<style>body{display:none}</style>", "&lt;style&gt;", "<style"),
    "inline html link": ('<a href="javascript:x">x</a>', "&lt;a href=", "<a "),
    "html comment": ("x <!-- hidden -->", "&lt;!-- hidden --&gt;", "<!--"),
    "script in a code block": ("```\n<script>x</script>\n```", "&lt;script&gt;x", "<script"),
    "image becomes a link": (
        '![a cat](https://img.example/cat.png "Cat")',
        '<a href="https://img.example/cat.png" title="Cat" target="_blank" '
        'rel="nofollow noopener">Image: a cat</a>',
        "<img",
    ),
    "image with a javascript source": ("![x](javascript:alert(1))", "![x](javascript:", "<a"),
    "image with a data source": ("![pixel](data:image/gif;base64,R0lGOD)", "Image: pixel", "data:"),
    "autolink": (
        "<https://example.com/a?b=1&c=2>",
        '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="nofollow noopener">'
        "https://example.com/a?b=1&amp;c=2</a>",
        "<script",
    ),
    "reference link": (
        '[the docs][1]\n\n[1]: https://example.com/docs "Docs"',
        '<a href="https://example.com/docs" title="Docs" target="_blank" rel="nofollow noopener">'
        "the docs</a>",
        "[1]:",
    ),
    "link title with quotes": (
        '[x](https://e.example "a \\" onmouseover=alert(1) b")',
        'title="a &quot; onmouseover=alert(1) b"',
        'onmouseover=alert(1) b">',
    ),
    "html entities": ("&lt;b&gt; &copy; &#60;i&#62;", "&lt;b&gt; © &lt;i&gt;", "<b>"),
    "nested emphasis": (
        "***a _b **c** d_ e***",
        "<em><strong>a <em>b <strong>c</strong> d</em> e</strong></em>",
        "*",
    ),
    "line breaks kept": ("one\ntwo", "one<br>\ntwo", "<br />"),
}


@pytest.mark.parametrize("case", sorted(MARKDOWN_CASES))
def test_markdown_renders_inert(case):
    source, shown, absent = MARKDOWN_CASES[case]
    html = str(markdown.render(source))
    assert shown in html
    assert absent not in html
    assert_inert(html)


#: Pieces Markdown and HTML attacks are made of, shuffled by hypothesis.
PIECES = [
    *"<>&\"'`*_[]()!:/\\#=- \n",
    *("javascript", "JavaScript", "on", "a", "img", "script", "http", "data", "&#106;", "x"),
]


@given(st.lists(st.sampled_from(PIECES), max_size=60).map("".join))
@settings(max_examples=300, deadline=None)
def test_any_markdown_renders_inert(source):
    assert_inert(str(markdown.render(source)))


@pytest.fixture
def markdown_issue(app, world, db):
    """The first issue's description and a comment hold every case above."""
    text = "\n\n".join(source for source, _, _ in MARKDOWN_CASES.values())
    with app.app_context(), unscoped("test: Markdown"):
        db.session.execute(
            sa.update(Issue).where(Issue.id == world.issues["first"]).values(description=text)
        )
        db.session.add(
            Comment(
                organization_id=world.orgs["acme"],
                issue_id=world.issues["first"],
                author_id=world.users["bob"],
                body=text,
            )
        )
        db.session.commit()
    return world


def test_issue_page_shows_description_and_comments_as_safe_markdown(login, markdown_issue):
    page = login("dave").get(f"/o/acme/issues/{markdown_issue.issues['first']}").get_data(True)
    description = page.split('class="description markdown">')[1].split("</div>")[0]
    comment = page.split('class="text markdown">')[1].split("</div>")[0]
    for html in (description, comment):
        assert_inert(html)
        assert "<em><strong>a <em>b" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in page and "<iframe" not in page and "<img" not in page


def test_api_gives_markdown_source_and_safe_html(api, markdown_issue):
    issue = api("dave").get(f"/api/v1/issues/{markdown_issue.issues['first']}").get_json()
    assert issue["description"].startswith("[click](javascript:alert(1))")
    assert issue["description_html"] == str(markdown.render(issue["description"]))
    assert_inert(issue["description_html"])
    comments = api("dave").get(f"/api/v1/issues/{markdown_issue.issues['first']}/comments")
    [comment] = comments.get_json()
    assert comment["body"] == issue["description"]
    assert comment["body_html"] == issue["description_html"]


def test_preview_endpoint_renders_like_the_pages(api, world):
    source = "**bold** <script>x</script> [a](javascript:y)"
    rv = api("dave").post("/api/v1/markdown", json={"text": source})
    assert rv.status_code == 200
    assert rv.get_json() == {
        "html": "<p><strong>bold</strong> &lt;script&gt;x&lt;/script&gt; [a](javascript:y)</p>"
    }
