"""The ``flask karaffe ...`` command group, also installed as ``karaffe ...``.

Each part adds its commands to :data:`cli` here (``run-job``, ``scheduler``,
``relay``...), so ``flask karaffe --help`` lists everything karaffe can do.
"""

from __future__ import annotations

import sys

from flask.cli import AppGroup, FlaskGroup

__all__ = ["cli", "main"]

#: ``flask karaffe``: registered on every :class:`karaffe.App`.
cli = AppGroup("karaffe", help="karaffe's commands: jobs, the event relay and more.")


def main() -> None:
    """The ``karaffe`` console script: ``flask karaffe`` with ``--app`` support."""
    group = FlaskGroup(help="karaffe's commands; use --app to name your app factory.")
    for name, command in cli.commands.items():
        group.add_command(command, name)
    sys.exit(group.main())


def _add_job_commands() -> None:
    from .jobs.cli import register

    register(cli)


_add_job_commands()


def _add_events_commands() -> None:
    from .events.cli import register

    register(cli)


_add_events_commands()
