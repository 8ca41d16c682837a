"""The README's Python snippets run as they are, so the tour stays true."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_snippet_in_the_readme_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 8
    # One script, in its own process, as a reader would paste it: the snippets
    # declare models and apps that must not leak into the rest of the suite.
    script = tmp_path / "readme.py"
    script.write_text(
        "\n".join(f"# --- README python block {i}\n{b}" for i, b in enumerate(blocks, 1))
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "{'sum': 3}" in out
    assert "string_too_short" in out
    assert "[]\n['anvil']" in out
    assert '"\\u003cem\\u003evar x = \\u0027foo\\u0027;\\u003c/em\\u003e"' in out


def test_every_flask_command_in_the_readme_runs(tmp_path: Path) -> None:
    """The README's `flask` commands (the tour's shell blocks) exit 0 as
    written, from the repository root, on the demo's database (here a copy
    in tmp_path: DATABASE_URL is the one thing changed)."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = [
        line.split("#")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith(".venv/bin/flask --app ") and " run --debug" not in line
    ]
    assert len(commands) >= 3
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite'}")
    env.pop("KARAFFE_SECRET_KEY", None)
    flask = str(Path(sys.executable).parent / "flask")
    for command in commands:
        argv = shlex.split(command)
        argv[0] = flask
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"


def test_the_dev_runner_makes_its_schema_and_demo_data_on_first_start(tmp_path: Path) -> None:
    """`flask --app examples/tracker/devapp.py run --debug` on a fresh checkout
    serves the login, not a 500 for a missing table."""
    import sqlite3
    import time
    import urllib.request

    from karaffe._servers import free_port

    database = tmp_path / "demo.sqlite"
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{database}", TRACKER_DEMO_ISSUES="10")
    flask = str(Path(sys.executable).parent / "flask")
    argv = [flask, "--app", "examples/tracker/devapp.py", "run", "--debug", "--port", str(port)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as rv:
                    assert rv.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        with sqlite3.connect(database) as conn:
            assert conn.execute("select count(*) from issue").fetchone() == (10,)
    finally:
        # The reloader's child is in the same new session: stop the group.
        os.killpg(proc.pid, 15)
        proc.wait(20)
