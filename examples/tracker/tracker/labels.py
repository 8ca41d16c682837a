"""Label colours: a validated ``#rrggbb`` background, and the text colour
that stays readable on it, computed here so that no page or client has to.

The text colour is black or white, whichever contrasts more with the
background by WCAG 2's contrast ratio (relative luminance): on every
background one of the two reaches at least 4.5:1, the contrast WCAG
AA asks of normal text. :data:`DEFAULT_LABELS` is the set a new organization
starts with.
"""

from __future__ import annotations

import functools
import hashlib
import re

__all__ = [
    "DEFAULT_LABELS",
    "PALETTE",
    "color_for",
    "contrast_ratio",
    "normalize_color",
    "text_color",
]

#: A colour as the API and the forms accept it: ``#`` and six hex digits.
COLOR_PATTERN = r"^#[0-9a-fA-F]{6}$"
_COLOR = re.compile(COLOR_PATTERN)

#: The labels of a new organization, with their colours.
DEFAULT_LABELS: tuple[tuple[str, str], ...] = (
    ("bug", "#d73a4a"),
    ("feature", "#1d76db"),
    ("docs", "#0e8a16"),
    ("question", "#d876e3"),
    ("security", "#b60205"),
    ("performance", "#fbca04"),
    ("good first issue", "#7057ff"),
    ("wontfix", "#e4e669"),
)

#: Colours a label gets when it is created without one, chosen by its name.
PALETTE: tuple[str, ...] = (
    "#d73a4a", "#1d76db", "#0e8a16", "#d876e3", "#fbca04", "#7057ff",
    "#006b75", "#e99695", "#5319e7", "#bfdadc", "#c2e0c6", "#f9d0c4",
)  # fmt: skip


def normalize_color(value: str) -> str:
    """``value`` as stored: ``#`` and six lower-case hex digits.

    :raises ValueError: not a ``#rrggbb`` colour.
    """
    value = value.strip()
    if not _COLOR.match(value):
        raise ValueError("Enter a colour as # and six hex digits, such as #d73a4a.")
    return value.lower()


def _luminance(color: str) -> float:
    """WCAG 2's relative luminance of a ``#rrggbb`` colour, from 0 to 1."""
    channels = []
    for i in (1, 3, 5):
        c = int(color[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two ``#rrggbb`` colours, from 1 to 21."""
    a, b = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


@functools.lru_cache(maxsize=4096)
def text_color(background: str) -> str:
    """``#000000`` or ``#ffffff``: whichever contrasts more with ``background``
    (remembered per colour: every label of every listed issue asks)."""
    black, white = contrast_ratio(background, "#000000"), contrast_ratio(background, "#ffffff")
    return "#000000" if black >= white else "#ffffff"


def color_for(name: str) -> str:
    """The colour of a label created without one: from :data:`PALETTE`, by
    its name, so the same name gets the same colour everywhere."""
    digest = hashlib.blake2s(name.lower().encode(), digest_size=2).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]
