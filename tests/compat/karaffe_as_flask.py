"""A pytest plugin (``-p karaffe_as_flask``) that makes ``flask.Flask`` be
:class:`karaffe.App` before an upstream suite's ``conftest.py`` is imported.

Every ``Flask(...)`` an upstream test builds, and every subclass it derives
(``class Flask(flask.Flask)`` in Flask-WTF's conftest), is then a karaffe App,
created as the test creates it: without ``configure()``.
"""

from __future__ import annotations

import flask

import karaffe

flask.Flask = karaffe.App  # type: ignore[misc]
