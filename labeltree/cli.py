"""The `labeltree` command: a thin click layer over the library.

Each module in `labeltree/commands/` declares its commands with all of their options and lists
them in `COMMANDS`; `COMMAND_MODULES` below names every module and its commands, so the whole CLI
is readable here. A module is imported only when one of its commands runs (or `--help` lists
them), and the modules import the library inside their commands: a command loads what it uses.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from labeltree import __version__
from labeltree.errors import LabeltreeError


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    """A data problem that was worked around: one 'warning: ...' line, not Python's file:line + source."""
    if category.__name__ == "LabeltreeWarning":
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def _one_line(text: str) -> str:
    """The error as one line: control characters in it (a file name holding a line break) escaped."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


class _Group(click.Group):
    """Bad input -> one line on stderr and exit status 2, never a traceback. Commands are loaded on
    first use from COMMAND_MODULES, so that a command imports only its own module."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002 - click's signature
        return sorted({*self.commands, *_MODULE_OF})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: ARG002
        if cmd_name not in self.commands and cmd_name in _MODULE_OF:
            for cmd in load_commands(_MODULE_OF[cmd_name]):
                self.add_command(cmd)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context):
        warnings.formatwarning = _format_warning
        try:
            return super().invoke(ctx)
        except LabeltreeError as e:
            click.echo(f"error: {_one_line(str(e))}", err=True)
            sys.exit(2)
        except OSError as e:  # a file problem no check foresaw (race, odd file system): still one line
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"error: {_one_line(where + str(e.strerror or e))}", err=True)
            sys.exit(2)
        except RuntimeError as e:
            if "symlink loop" not in str(e).lower():
                raise
            click.echo(f"error: {e}; give the file itself", err=True)
            sys.exit(2)
        except ImportError as e:  # a package of an extra that is not installed (torch for train, ...)
            from labeltree.extras import missing_extra_message

            msg = missing_extra_message(e)
            if msg is None:
                raise
            click.echo(f"error: {msg}", err=True)
            sys.exit(2)
        except Warning as e:  # a data warning turned into an error (python -W error, PYTHONWARNINGS=error)
            if type(e).__name__ != "LabeltreeWarning":
                raise
            click.echo(f"error: {_one_line(str(e))} (warnings are errors here: -W error / PYTHONWARNINGS)", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        finally:
            warnings.formatwarning = _python_format_warning
            fsutil = sys.modules.get("labeltree.fsutil")  # loaded only by commands that write outputs
            if fsutil is not None:
                fsutil.release_outputs()  # type: ignore[attr-defined]


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


#: module in labeltree/commands -> the names of the commands in its COMMANDS (nothing is discovered at run time)
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "demo": ("demo",),
    "merge": ("merge",),
    "place": ("place", "audit"),
    "tree": ("tree", "validate"),
    "imports": ("import",),
    "synth": ("synth",),
    "gtsdb": ("gtsdb-masks",),
    "stats": ("stats", "stats-merge"),
    "evaluate": ("evaluate",),
    "train": ("train", "predict", "prepare"),
    "export": ("export",),
    "calibrate": ("calibrate",),
    "migrate": ("migrate", "tree-diff"),
    "annotate": ("annotate-extended",),
    "convert": ("convert",),
}
_MODULE_OF = {name: module for module, names in COMMAND_MODULES.items() for name in names}


def load_commands(module: str) -> list[click.Command]:
    """The commands of labeltree/commands/MODULE.py (importing it)."""
    return list(importlib.import_module(f"labeltree.commands.{module}").COMMANDS)


if __name__ == "__main__":
    main()
