"""Development runner (slides 24-26): the tracker on SQLite with no services,
with the debugger and the reloader.

    python examples/tracker/devapp.py            # what `make demo` runs
    flask --app examples/tracker/devapp.py run --debug
"""

from __future__ import annotations

import os
from pathlib import Path

from tracker import create_app

HERE = Path(__file__).resolve().parent

app = create_app(
    {
        "DEBUG": True,
        "SECRET_KEY": os.environ.get("KARAFFE_SECRET_KEY", "tracker-development-key"),
    }
)

if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    print(f" * tracker demo: http://127.0.0.1:{port}/  (API docs: http://127.0.0.1:{port}/docs)")
    app.run(host="127.0.0.1", port=port, debug=True, use_reloader=True)
