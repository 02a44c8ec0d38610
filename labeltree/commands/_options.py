"""Click options shared by commands that read label files (no commands here: COMMANDS is absent)."""

from __future__ import annotations

import click

from labeltree.vocab import UNKNOWN_CHOICES

unknown_option = click.option(
    "--unknown", type=click.Choice(UNKNOWN_CHOICES), default="error", show_default=True,
    help="Label values the taxonomy does not define: 'error' stops with the file and the values, "
         "'ignore' maps them to the taxonomy's ignore value.")


def split_names(ctx: click.Context,  # noqa: ARG001 - click's callback signature
                 param: click.Parameter, value: object) -> object:
    """Click callback: every --split value (one, several, or comma-separated) is a name, never a path."""
    from labeltree.datasets.base import check_split_name

    if value is None:
        return value
    names = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    for v in names:
        for name in (v.split(",") if param.name == "splits" and isinstance(value, str) else [v]):
            check_split_name(name, f"--{param.name}" if param.name == "splits" else "--split")
    return value
