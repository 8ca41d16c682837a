"""``flask karaffe``: parts add their commands to the app's group from their
``init_app``; the core imports none of them; the ``karaffe`` script shows the
commands of the app it loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from flask.cli import FlaskGroup, run_command

import karaffe
import karaffe.jobs
from karaffe.cli import ScriptGroup, command_group, serves_requests
from karaffe.events import Events


def commands(app: karaffe.App) -> list[str]:
    group = app.cli.commands.get("karaffe")
    assert isinstance(group, click.Group)
    return sorted(group.commands)


def test_the_core_imports_neither_jobs_nor_events() -> None:
    code = textwrap.dedent(
        """
        import sys
        import karaffe
        app = karaffe.App("bare")
        app.configure({"SECRET_KEY": "s" * 32}, environ={})
        app.test_cli_runner().invoke(args=["--help"])
        print(sorted(m for m in sys.modules if m.startswith(("karaffe.jobs", "karaffe.events"))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "[]\n"


def test_a_bare_app_has_no_karaffe_group() -> None:
    assert "karaffe" not in karaffe.App("bare").cli.commands


def test_each_part_adds_its_own_commands() -> None:
    jobs_only = karaffe.App("jobs_only")
    karaffe.jobs.init_app(jobs_only)
    assert commands(jobs_only) == ["jobs", "run-job", "scheduler"]

    events_only = karaffe.App("events_only")
    Events(events_only)
    assert commands(events_only) == ["dispatch", "relay"]

    both = karaffe.App("both")
    Events(both)
    karaffe.jobs.init_app(both)
    assert commands(both) == ["dispatch", "jobs", "relay", "run-job", "scheduler"]


def test_command_group_is_created_once_and_takes_the_apps_own_commands() -> None:
    app = karaffe.App("own")
    group = command_group(app)
    assert command_group(app) is group
    group.add_command(click.Command("hello", callback=lambda: click.echo("hi")))
    assert app.test_cli_runner().invoke(args=["karaffe", "hello"]).output == "hi\n"


def test_a_group_named_karaffe_that_is_not_a_group_is_refused() -> None:
    app = karaffe.App("clash")
    app.cli.add_command(click.Command("karaffe"))
    with pytest.raises(TypeError, match=r"app\.cli's 'karaffe' command is not a group"):
        command_group(app)


APP = """
import click
import karaffe
from karaffe.cli import command_group

def create_app(config=None):
    app = karaffe.App(__name__)
    app.configure({"TESTING": True, "SECRET_KEY": "s", **(config or {})}, environ={})

    @command_group(app).command("where")
    def where():
        click.echo(app.config["APPLICATION_ROOT"])

    return app
"""


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[str]:
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    yield str(tmp_path / f"{name}.py")
    sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def script(*args: str) -> click.testing.Result:
    return CliRunner().invoke(ScriptGroup(), list(args), catch_exceptions=False)


def test_the_script_lists_and_runs_the_commands_of_the_loaded_app(app_module: str) -> None:
    listed = script("--app", app_module, "--help")
    assert listed.exit_code == 0, listed.output
    assert "  where" in listed.stdout
    ran = script("--app", app_module, "where")
    assert (ran.exit_code, ran.stdout) == (0, "/\n")


def test_the_script_reports_an_unknown_command() -> None:
    app = karaffe.App("bare")
    result = CliRunner().invoke(ScriptGroup(create_app=lambda: app), ["relay"])
    assert result.exit_code == 2
    assert "No such command 'relay'" in result.stderr


def test_a_command_builds_the_app_without_serving_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")  # FlaskGroup sets it: restored after
    app = karaffe.App("karaffe_cli_serving")
    app.configure({"SECRET_KEY": "s" * 32}, environ={})
    seen: list[bool] = []
    app.cli.command("probe")(lambda: seen.append(serves_requests()))
    assert serves_requests()  # imported by a WSGI server, a script, a test
    result = CliRunner().invoke(FlaskGroup(create_app=lambda: app), ["probe"])
    assert result.exit_code == 0, result.output
    assert seen == [False]


@pytest.mark.parametrize(
    ("reload", "from_reloader", "serves"),
    [(False, False, True), (True, False, False), (True, True, True)],
)
def test_flask_run_serves_requests_unless_it_is_the_reloaders_parent(
    monkeypatch: pytest.MonkeyPatch, reload: bool, from_reloader: bool, serves: bool
) -> None:
    if from_reloader:
        monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    else:
        monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    with click.Context(FlaskGroup()) as root, click.Context(run_command, parent=root) as ctx:
        ctx.params = {"reload": reload}
        assert serves_requests() is serves
