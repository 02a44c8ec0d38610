"""The `labeltree` command: a thin click layer over the library.

Each module in `labeltree/commands/` exposes `COMMANDS` (a list of click commands); they are
collected here so that a feature brings its own CLI without touching this file.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from labeltree import __version__
from labeltree.errors import LabeltreeError


class _Group(click.Group):
    """Bad input -> one line on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LabeltreeError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="labeltree")
def main() -> None:
    """Train one street-scene segmentation network on datasets whose label spaces disagree.

    \b
    Start here:
      labeltree demo --quick              # the paper in miniature on built-in synthetic data
      labeltree merge cityscapes vistas gtsdb
      labeltree tree
    """


def _register() -> None:
    from labeltree import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{mod.name}")
        for cmd in getattr(module, "COMMANDS", []):
            main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
