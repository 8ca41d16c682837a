"""karaffe's response class: Flask's, sent without checking its headers twice.

Every value a :class:`~werkzeug.datastructures.Headers` holds was checked when
it went in (no newline: :meth:`Headers.add`, ``set``, ``[]=``, ``update``...
all refuse one). Werkzeug's :meth:`~werkzeug.wrappers.Response.get_wsgi_headers`
then copies the response's headers through the ``Headers`` constructor, which
checks every value again, one regular expression a header, on every response.
:class:`Response` copies them as they are when nothing in them needs Werkzeug's
rewriting, and leaves everything else to Werkzeug.

.. versionadded:: 0.1 (issue 14)
"""

from __future__ import annotations

import typing as t

from flask import Response as FlaskResponse
from werkzeug.datastructures import Headers

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["Response"]

#: Headers that Werkzeug rewrites when it sends a response (an IRI in a
#: location made a URI).
_REWRITTEN = frozenset({"location", "content-location"})


class Response(FlaskResponse):
    """The response class of :class:`karaffe.App`: Flask's, with a cheaper
    :meth:`get_wsgi_headers`. What is sent is what Flask's sends."""

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        """Werkzeug's :meth:`~werkzeug.wrappers.Response.get_wsgi_headers`,
        without validating each header a second time: a copy of the headers,
        and the ``Content-Length`` of a buffered body when it has none yet.

        Werkzeug's own code runs whenever it would change more than that: a
        ``Location`` or ``Content-Location`` header, a status without a body
        (1xx, 204, 304), or headers of another class than ``Headers``.
        """
        headers = self.headers
        status = self.status_code
        if type(headers) is not Headers or status < 200 or status == 204 or status == 304:
            return super().get_wsgi_headers(environ)
        items = headers._list
        has_length = False
        for key, _ in items:
            lower = key.lower()
            if lower == "content-length":
                has_length = True
            elif lower in _REWRITTEN:
                return super().get_wsgi_headers(environ)
        copy = Headers()
        copy._list.extend(items)
        if not has_length and self.automatically_set_content_length and self.is_sequence:
            copy._list.append(("Content-Length", str(sum(len(x) for x in self.iter_encoded()))))
        return copy
