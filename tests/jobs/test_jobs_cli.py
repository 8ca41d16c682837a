"""``flask karaffe run-job``, ``jobs`` and ``scheduler``, through click's
CliRunner and as real subprocesses of the ``karaffe`` console script."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from _jobtools import FACTORY
from click.testing import CliRunner, Result
from flask.cli import cli as flask_cli

Package = Callable[[dict[str, str]], str]

JOBS = """
import logging

from flask import current_app
from karaffe.jobs import job

@job(schedule="* * * * *")
def hello(*args):
    logging.getLogger(__name__).info("saying hello")
    logging.getLogger("chatty.library").info("not shown")
    print("hello", current_app.config["APPLICATION_ROOT"], *args)

def explode():
    raise ValueError("the answer is not 42")

@job(schedule="0 7 * * *", unscoped="count every organization's rows")
def nightly():
    pass

NOT_CALLABLE = 42
"""

KARAFFE = str(Path(sys.executable).with_name("karaffe"))


@pytest.fixture
def app_package(package: Package) -> str:
    return package({"__init__.py": FACTORY, "jobs.py": JOBS})


def flask(*args: str) -> Result:
    return CliRunner().invoke(flask_cli, list(args), catch_exceptions=False)


def test_run_job_runs_the_job_and_logs_its_outcome(
    app_package: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs")
    result = flask("--app", app_package, "karaffe", "run-job", f"{app_package}.jobs.hello")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello /\n"
    start, end = (r.getMessage() for r in caplog.records)
    assert start == f"job {app_package}.jobs.hello started (no tenant context)"
    assert end.startswith(f"job {app_package}.jobs.hello succeeded in ")


def test_arguments_after_a_double_dash_go_to_the_job(app_package: str) -> None:
    result = flask(
        "--app", app_package, "karaffe", "run-job", f"{app_package}.jobs.hello", "--", "a", "--b"
    )
    assert result.exit_code == 0, result.output
    assert "hello / a --b\n" in result.stdout


def test_a_failing_job_exits_1_with_its_error(
    app_package: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = flask("--app", app_package, "karaffe", "run-job", f"{app_package}.jobs.explode")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: job {app_package}.jobs.explode failed: ValueError: the answer is not 42\n"
    )
    (logged, _) = (r for r in caplog.records if r.levelno == logging.ERROR)
    assert isinstance(logged.exc_info and logged.exc_info[1], ValueError)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("PKG.jobs.nope", "Error: cannot import job 'PKG.jobs.nope': ImportError: "),
        ("PKG.jobs.NOT_CALLABLE", "Error: job 'PKG.jobs.NOT_CALLABLE' is a int, not a callable\n"),
    ],
)
def test_a_bad_import_name_or_a_non_callable_exits_2(
    app_package: str, name: str, message: str
) -> None:
    name, message = name.replace("PKG", app_package), message.replace("PKG", app_package)
    result = flask("--app", app_package, "karaffe", "run-job", name)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("settings.json", json.dumps({"APPLICATION_ROOT": "/from-file"})),
        ("settings.toml", 'APPLICATION_ROOT = "/from-file"\n'),
        ("settings.py", 'APPLICATION_ROOT = "/from-" + "file"\nlowercase = "ignored"\n'),
    ],
)
def test_config_file_settings_are_passed_to_the_factory(
    app_package: str, tmp_path: Path, filename: str, content: str
) -> None:
    (tmp_path / filename).write_text(content)
    args = ("karaffe", "run-job", f"{app_package}.jobs.hello", "--config", str(tmp_path / filename))
    result = flask("--app", app_package, *args)
    assert result.exit_code == 0, result.output
    assert "hello /from-file\n" in result.stdout


def test_an_explicit_factory_builds_the_app(app_package: str, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"APPLICATION_ROOT": "/f"}')
    result = flask(
        "--app", app_package, "karaffe", "run-job", f"{app_package}.jobs.hello",
        "--config", str(tmp_path / "c.json"), "--factory", f"{app_package}:create_app",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hello /f\n" in result.stdout


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("bad.json", "[1, 2]", "Error: config file {path}: expected a JSON object\n"),
        ("bad.json", "{", "Error: config file {path} is invalid: JSONDecodeError: "),
        ("bad.toml", "= 1", "Error: config file {path} is invalid: TOMLDecodeError: "),
        ("bad.yaml", "a: 1", "Error: config file {path}: use a .py, .json or .toml file\n"),
        (
            "bad.json",
            '{"SECERT_KEY": "x"}',
            "Error: unknown setting SECERT_KEY (from the config mapping); did you mean SECRET_KEY?\n",
        ),
    ],
)
def test_an_unusable_config_exits_2(
    app_package: str, tmp_path: Path, filename: str, content: str, message: str
) -> None:
    path = tmp_path / filename
    path.write_text(content)
    args = ("karaffe", "run-job", f"{app_package}.jobs.hello", "--config", str(path))
    result = flask("--app", app_package, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message.format(path=path))


def test_a_missing_config_file_exits_2(app_package: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    args = ("karaffe", "run-job", f"{app_package}.jobs.hello", "--config", str(missing))
    result = flask("--app", app_package, *args)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: cannot read config file {missing}: No such file or directory\n"
    )


def test_jobs_lists_schedules_contexts_and_next_runs(app_package: str) -> None:
    result = flask("--app", app_package, "karaffe", "jobs")
    assert result.exit_code == 0, result.output
    header, hello, nightly = result.stdout.splitlines()
    assert header.split() == ["JOB", "SCHEDULE", "CONTEXT", "NEXT", "RUN", "LAST", "RUN"]
    assert hello.startswith(f"{app_package}.jobs.hello ")
    assert "* * * * *" in hello and "no tenant context" in hello and hello.endswith(" -")
    assert "0 7 * * *" in nightly and "unscoped: count every organization's rows" in nightly
    assert " 07:00:00 " in nightly


def test_the_scheduler_runs_due_ticks_once_and_jobs_shows_the_last_run(
    app_package: str, tmp_path: Path
) -> None:
    (tmp_path / "c.json").write_text(
        json.dumps({"JOBS_BACKEND": f"sqlite:///{tmp_path / 'jobs.sqlite3'}"})
    )
    config = ("--config", str(tmp_path / "c.json"))
    first = flask("--app", app_package, "karaffe", "scheduler", "--once", *config)
    assert first.exit_code == 0, first.output
    # Every minute is due within the default 60 s grace: it ran, once.
    assert first.stdout == "hello /\n"
    listed = flask("--app", app_package, "karaffe", "jobs", *config)
    (hello,) = [line for line in listed.stdout.splitlines() if ".jobs.hello " in line]
    assert " succeeded in " in hello


def script_env(package_dir: Path) -> dict[str, str]:
    """The environment of a ``karaffe`` subprocess: the throwaway package is
    importable, and so is the karaffe under test (the script's own install
    may be another checkout)."""
    paths = [str(package_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_karaffe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = script_env(cwd)
    env.pop("FLASK_APP", None)
    return subprocess.run(
        [KARAFFE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_karaffe_script_exits_1_when_the_job_fails(app_package: str, tmp_path: Path) -> None:
    done = run_karaffe("--app", app_package, "run-job", f"{app_package}.jobs.explode", cwd=tmp_path)
    assert done.returncode == 1
    assert f"ERROR karaffe.jobs: job {app_package}.jobs.explode failed in " in done.stderr
    assert done.stderr.endswith(
        f"Error: job {app_package}.jobs.explode failed: ValueError: the answer is not 42\n"
    )


def test_the_karaffe_script_exits_2_for_a_bad_import_name(app_package: str, tmp_path: Path) -> None:
    done = run_karaffe("--app", app_package, "run-job", "no_such_module.job", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(
        "Error: cannot import job 'no_such_module.job': ModuleNotFoundError: "
    )


def test_the_karaffe_script_runs_a_job_with_a_config_file(app_package: str, tmp_path: Path) -> None:
    (tmp_path / "prod.toml").write_text('APPLICATION_ROOT = "/prod"\n')
    done = run_karaffe(
        "--app", app_package, "run-job", f"{app_package}.jobs.hello", "--config", "prod.toml",
        "--", "x", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello /prod x\n"
    started, said, succeeded = done.stderr.splitlines()
    assert started.endswith(
        f" INFO karaffe.jobs: job {app_package}.jobs.hello started (no tenant context)"
    )
    assert said.endswith(f" INFO {app_package}.jobs: saying hello")
    assert f" INFO karaffe.jobs: job {app_package}.jobs.hello succeeded in " in succeeded


def test_the_scheduler_runs_until_sigterm_then_stops_cleanly(
    app_package: str, tmp_path: Path
) -> None:
    (tmp_path / "c.json").write_text(
        json.dumps(
            {"JOBS_BACKEND": f"sqlite:///{tmp_path / 'jobs.sqlite3'}", "JOBS_POLL_SECONDS": 0.05}
        )
    )
    env = script_env(tmp_path)
    proc = subprocess.Popen(
        [KARAFFE, "--app", app_package, "scheduler", "--config", "c.json"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr or ()])
    reader.start()
    seen: list[str] = []
    try:
        # The every-minute job is due at start (within the grace): wait for its run.
        while not any(f"job {app_package}.jobs.hello succeeded" in line for line in seen):
            seen.append(lines.get(timeout=30))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        out = proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    while not lines.empty():
        seen.append(lines.get())
    assert proc.returncode == 0, "".join(seen)
    assert out == "hello /\n"
    assert any("scheduler" in line and "started; jobs: " in line for line in seen)
    assert any("stopping; waiting for running jobs" in line for line in seen)
