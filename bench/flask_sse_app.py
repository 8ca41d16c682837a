"""flask-sse as its documentation sets it up, for the relay benchmark.

Serve with gunicorn's gevent worker: ``REDIS_URL=... gunicorn -k gevent -w 1
bench.flask_sse_app:app``. Each connection holds its own Redis subscription
(that is flask-sse's design).
"""

from __future__ import annotations

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app.register_blueprint(sse, url_prefix="/stream")
