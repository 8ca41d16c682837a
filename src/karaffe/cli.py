"""The ``flask karaffe ...`` command group, also installed as ``karaffe ...``.

The core defines no commands of its own: each part adds its commands to the
app's group from its ``init_app``, with :func:`command_group`::

    def init_app(app):
        command_group(app).add_command(relay_command)

so an app has ``flask karaffe run-job`` once it set up ``karaffe.jobs``, and
``flask karaffe relay`` once it set up ``karaffe.events``; a bare
:class:`karaffe.App` has no ``karaffe`` group, and imports neither part.

The ``karaffe`` console script (:func:`main`) is ``flask karaffe`` with
``--app`` support: it loads the app to find the commands its parts added.
Commands that build the app from a settings file (``--config FILE``, with
``--factory module:func``) are found on the app built that way, so the
environment need not be enough to start the app
(``karaffe --app myapp run-job ... --config prod.toml``). This module also
holds that loading, shared by the parts' commands: :func:`load_app`, and
:func:`serves_requests`, which tells a process serving the app's pages from
one that runs a command (the relay, the scheduler, a migration...).
"""

from __future__ import annotations

import json
import runpy
import sys
import tomllib
import typing as t
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import (
    AppGroup,
    FlaskGroup,
    NoAppException,
    ScriptInfo,
    prepare_import,
    run_command,
)
from flask.helpers import get_debug_flag
from werkzeug.serving import is_running_from_reloader
from werkzeug.utils import ImportStringError, import_string

from .config import ConfigError

__all__ = [
    "GROUP_NAME",
    "ScriptGroup",
    "UsageFailure",
    "command_group",
    "config_option",
    "factory_option",
    "find_app_factory",
    "load_app",
    "load_config_file",
    "main",
    "serves_requests",
]

#: The name of the group under ``flask``: ``flask karaffe ...``.
GROUP_NAME = "karaffe"

#: A function building an app from settings: ``create_app(config)``.
AppFactory = Callable[[Mapping[str, t.Any] | None], Flask]


def command_group(app: Flask) -> click.Group:
    """The app's ``flask karaffe`` group, added to ``app.cli`` on first use.

    Parts call it from their ``init_app`` to add their commands; an app may
    add its own the same way.
    """
    group = app.cli.commands.get(GROUP_NAME)
    if group is None:
        group = AppGroup(GROUP_NAME, help="karaffe's commands, added by the parts the app uses.")
        app.cli.add_command(group)
    if not isinstance(group, click.Group):
        raise TypeError(f"app.cli's {GROUP_NAME!r} command is not a group: {group!r}")
    return group


# -- which app, which config ---------------------------------------------------


class UsageFailure(click.ClickException):
    """A command, factory or config that cannot be used: exit code 2."""

    exit_code = 2


def load_config_file(path: str | Path) -> dict[str, t.Any]:
    """Settings from a file, by extension: ``.json`` (an object), ``.toml``
    (top-level keys), or ``.py`` (its UPPERCASE names, like Flask's
    ``from_pyfile``)."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise UsageFailure(f"config file {path}: expected a JSON object")
            return data
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".py":
            namespace = runpy.run_path(str(path))
            return {k: v for k, v in namespace.items() if k.isupper()}
    except UsageFailure:
        raise
    except OSError as exc:
        raise UsageFailure(f"cannot read config file {path}: {exc.strerror}") from None
    except Exception as exc:
        raise UsageFailure(f"config file {path} is invalid: {type(exc).__name__}: {exc}") from None
    raise UsageFailure(f"config file {path}: use a .py, .json or .toml file")


def find_app_factory(spec: str) -> AppFactory:
    """An app factory from ``"module:create_app"``, or ``"module"`` (its
    ``create_app`` or ``make_app``, as Flask looks for them).

    :raises ImportError: the module cannot be imported or has no factory.
    :raises TypeError: the name is not a function building an app.
    """
    module_name, _, attr = spec.partition(":")
    names = [attr] if attr else ["create_app", "make_app"]
    try:
        module = import_string(module_name)
    except ImportStringError as exc:
        raise ImportError(
            f"cannot import app factory module {module_name!r}: {exc.exception}"
        ) from None
    for name in names:
        factory = getattr(module, name, None)
        if factory is None:
            continue
        if isinstance(factory, Flask) or not callable(factory):
            raise TypeError(
                f"{module_name}:{name} is not an app factory (a create_app(config) function)"
            )
        return t.cast(AppFactory, factory)
    raise ImportError(f"module {module_name!r} has no {' or '.join(names)} app factory")


def load_app(
    factory: str | None = None, config_file: str | None = None, *, info: ScriptInfo | None = None
) -> Flask:
    """The app a command acts on.

    Without ``factory`` and ``config_file``: the app Flask's ``--app`` (or
    ``FLASK_APP``) names, loaded as ``flask`` loads it. With ``config_file``:
    built by ``factory(config)`` with that file's settings (slide 30); the
    factory is ``factory`` (``module:func``), else the one ``--app`` names
    (``--app tracker`` finds ``tracker.create_app``). An app is built once per
    invocation for each factory and file, so the ``karaffe`` script and the
    command it runs share it.

    :raises UsageFailure: the app, the factory or the config cannot be used.
    """
    info = info or click.get_current_context().ensure_object(ScriptInfo)
    if factory is None and config_file is None:
        try:
            return info.load_app()
        except (ConfigError, NoAppException) as exc:
            raise UsageFailure(str(exc)) from None
    built: dict[tuple[str | None, str | None], Flask]
    built = info.data.setdefault("karaffe.apps", {})
    key = (factory, config_file)
    if key not in built:
        config = load_config_file(config_file) if config_file else None
        try:
            make_app = find_app_factory(factory or _factory_from_app_path(info.app_import_path))
        except (ImportError, TypeError) as exc:
            raise UsageFailure(str(exc)) from None
        try:
            built[key] = make_app(config)
        except ConfigError as exc:
            raise UsageFailure(str(exc)) from None
    return built[key]


def _factory_from_app_path(app_path: str | None) -> str:
    if not app_path:
        raise UsageFailure(
            "--config needs the app factory: pass --app or --factory module:create_app"
        )
    path, _, attr = app_path.partition(":")
    if "(" in attr:
        raise UsageFailure(
            "--config cannot be combined with a call in --app; use --factory module:func"
        )
    module = prepare_import(path)
    return f"{module}:{attr}" if attr else module


#: ``--factory MODULE:FUNC``, for commands that call :func:`load_app`.
factory_option = click.option(
    "--factory",
    metavar="MODULE:FUNC",
    help="App factory called with the config (default: the one --app names).",
)
#: ``--config FILE``, for commands that call :func:`load_app`.
config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Settings file (.py, .json or .toml) passed to the app factory.",
)


# -- the karaffe script ----------------------------------------------------------


class ScriptGroup(FlaskGroup):
    """The ``karaffe`` script: Flask's own commands (``run``, ``shell``,
    ``routes``), then the commands of the loaded app's ``flask karaffe``
    group, run inside its app context."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # The command's own --factory and --config say which app to load.
        ctx.meta["karaffe.app_options"] = _app_options(args[1:])
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._load_plugin_commands()
        builtin = AppGroup.get_command(self, ctx, name)
        if builtin is not None:
            return builtin
        factory, config_file = ctx.meta.get("karaffe.app_options", (None, None))
        app = load_app(factory, config_file, info=ctx.ensure_object(ScriptInfo))
        if not current_app or current_app._get_current_object() is not app:  # type: ignore[attr-defined]
            ctx.with_resource(app.app_context())
        group = app.cli.commands.get(GROUP_NAME)
        return group.get_command(ctx, name) if isinstance(group, click.Group) else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        names = set(AppGroup.list_commands(self, ctx))
        try:
            app = load_app(info=ctx.ensure_object(ScriptInfo))
        except UsageFailure as exc:
            click.secho(f"Error: {exc.format_message()}\n", err=True, fg="red")
        else:
            group = app.cli.commands.get(GROUP_NAME)
            if isinstance(group, click.Group):
                names.update(group.list_commands(ctx))
        return sorted(names)


def serves_requests() -> bool:
    """Whether this process builds the app to serve its pages: imported by a
    WSGI server (granian, gunicorn), a script calling ``app.run()``, a test,
    or ``flask run``. ``False`` while a ``flask`` or ``karaffe`` command other
    than ``run`` loads the app (``flask karaffe relay``, ``scheduler``,
    ``dispatch``, ``db upgrade``, ``shell``...), and in the watching parent of
    ``flask run --reload``, which serves nothing itself.

    For start-up checks about serving, such as the events' wiring warning."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or not isinstance(ctx.find_root().command, FlaskGroup):
        return True
    if ctx.command is not run_command:
        return False
    reload = ctx.params.get("reload")
    if reload is None:
        reload = get_debug_flag()
    return not reload or is_running_from_reloader()


def _app_options(args: Sequence[str]) -> tuple[str | None, str | None]:
    """``--factory`` and ``--config`` among a command's arguments, before ``--``."""
    found: dict[str, str | None] = {"--factory": None, "--config": None}
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in found:
            found[name] = value if eq else next(rest, None)
    return found["--factory"], found["--config"]


def main() -> None:
    """The ``karaffe`` console script: ``flask karaffe`` with ``--app`` support."""
    group = ScriptGroup(help="karaffe's commands; use --app to name your app factory.")
    sys.exit(group.main())
