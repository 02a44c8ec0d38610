"""The `labeltree` command: a thin click layer over the library.

Each module in `labeltree/commands/` declares its commands with all of their options and lists
them in `COMMANDS`; `_register` below names every module, so the whole CLI is readable here.
"""

from __future__ import annotations

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
    """Bad input -> one line on stderr and exit status 2, never a traceback."""

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


def _register() -> None:
    """Every command, listed here explicitly: nothing is discovered at run time."""
    from labeltree.commands import (
        annotate,
        convert,
        demo,
        evaluate,
        export,
        gtsdb,
        imports,
        merge,
        place,
        stats,
        synth,
        train,
        tree,
    )

    for module in (demo, merge, place, tree, imports, synth, gtsdb, stats, evaluate, train, export, annotate,
                   convert):
        for cmd in module.COMMANDS:
            main.add_command(cmd)


_register()

if __name__ == "__main__":
    main()
