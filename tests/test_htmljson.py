"""JSON that is safe inside <script> and HTML attributes (slide 51)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from karaffe import htmljson


def test_talks_example_is_escaped() -> None:
    assert htmljson.dumps("<em>var x = 'foo';</em>") == (
        '"\\u003cem\\u003evar x = \\u0027foo\\u0027;\\u003c/em\\u003e"'
    )


def test_script_end_tag_cannot_close_the_element() -> None:
    out = htmljson.dumps({"title": "</script><script>alert(1)</script>"})
    assert "</script" not in out.lower()
    assert "<" not in out and ">" not in out


def test_ampersand_quote_and_line_separators_are_escaped() -> None:
    out = htmljson.dumps("a & b ' \u2028 \u2029")
    assert out == '"a \\u0026 b \\u0027 \\u2028 \\u2029"'


def test_filter_marks_output_safe_for_jinja() -> None:
    from jinja2 import Environment

    env = Environment(autoescape=True)
    env.filters["htmljson"] = htmljson.htmljson_filter
    html = env.from_string("<script>const x = {{ v|htmljson }};</script>").render(v={"t": "<b>"})
    assert html == '<script>const x = {"t":"\\u003cb\\u003e"};</script>'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_value_round_trips_and_is_inert(value: object) -> None:
    out = htmljson.dumps(value)
    assert json.loads(out) == value
    assert not set(out) & {"<", ">", "&", "'", "\u2028", "\u2029"}
