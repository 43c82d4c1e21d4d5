"""The `idp` command group: each subcommand's module is imported only when that subcommand runs.

Every process (`idp serve`, `worker`, `beat`, each CLI command) imports what its own command needs
and no more: `idp serve`, `worker` and `beat` never import Alembic (idp/migrate.py), which only
`init`, `db upgrade` and `dev` use. This is Click's documented "lazily loading subcommands" pattern:
the group resolves `module:attribute` names with importlib. `idp --help` still lists every command
with its help, by loading them all.

Errors are one line on stderr with exit status 2; nothing is written when input is refused.
"""

from __future__ import annotations

import atexit
import gc
import importlib

import click
from sqlalchemy.exc import IntegrityError, OperationalError

from idp.config import ConfigError
from idp.errors import IdpError

EXIT_USAGE = 2

# Each subcommand of `idp` and the module:attribute that defines it.
SUBCOMMANDS = {
    "init": "idp.cli:init",
    "db": "idp.cli:db",
    "users": "idp.manage:users",
    "clients": "idp.manage:clients",
    "dev": "idp.cli:dev",
    "serve": "idp.processes:serve",
    "worker": "idp.processes:worker",
    "beat": "idp.processes:beat",
    "keys": "idp.keyring.cli:keys",
    "jobs": "idp.jobs.cli:jobs",
    "purge": "idp.jobs.cli:purge",
}


class IdpGroup(click.Group):
    """The `idp` group: subcommands loaded on demand, and the IdP's own errors as one line and exit status 2."""

    def __init__(self, *args, subcommands: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.subcommands = subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every subcommand's name, sorted as Click sorts its own."""
        return sorted({*super().list_commands(ctx), *self.subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The named subcommand, its module imported now if it was not yet."""
        if cmd_name not in self.subcommands:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = self.subcommands[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise TypeError(f"{self.subcommands[cmd_name]} is not the click command {cmd_name!r}")
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ConfigError, IdpError) as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(EXIT_USAGE)
        except OperationalError as error:
            # Connection refused, missing file, wrong credentials: say which, not a traceback.
            click.echo(f"error: cannot use the database: {str(error.orig).splitlines()[0]}", err=True)
            ctx.exit(1)
        except IntegrityError as error:
            # A constraint refused the command's commit (a concurrent change): nothing was written.
            click.echo(f"error: nothing was written; the database refused it: {str(error.orig).splitlines()[0]}", err=True)
            ctx.exit(1)


@click.group(cls=IdpGroup, subcommands=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """idp: a self-hosted OpenID Connect provider."""


def main() -> None:
    """Console-script entry point."""
    # At exit, what is alive is frozen out of the collector: the interpreter's final collections
    # then skip the app's ~140,000 objects instead of walking them, about 0.5 s of CPU per `idp`
    # process (and per forked gunicorn worker). Exit handlers still all run; objects are still
    # freed by reference count as the modules are cleared; only cyclic garbage is left to the OS.
    atexit.register(gc.freeze)
    cli(prog_name="idp")
