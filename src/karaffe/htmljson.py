"""JSON that is safe to put inside HTML (slide 51).

``dumps`` escapes ``<``, ``>``, ``&`` and ``'`` as ``\\u003c``-style escapes,
and the line separators U+2028 and U+2029 that end a JavaScript string literal
in older engines, so the result can go inside ``<script>`` and inside a
single- or double-quoted attribute unchanged: ``</script>`` cannot close the
element and a quote cannot end the attribute. It is still plain JSON: any
JSON parser reads it back to the same value.

In templates: ``<script>const issue = {{ issue|htmljson }};</script>``.
"""

from __future__ import annotations

import typing as t

from markupsafe import Markup

from .api.result import encode_json

__all__ = ["dumps", "htmljson_filter"]

_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    ord("'"): "\\u0027",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def dumps(value: t.Any) -> str:
    """``value`` as JSON safe inside ``<script>`` and HTML attributes."""
    return encode_json(value).decode().translate(_ESCAPES)


def htmljson_filter(value: t.Any) -> Markup:
    """The ``htmljson`` Jinja filter: :func:`dumps`, marked safe for templates.

    Double quotes are left as they are (JSON needs them), so in an attribute use
    single quotes: ``data-issue='{{ issue|htmljson }}'``.
    """
    return Markup(dumps(value))
