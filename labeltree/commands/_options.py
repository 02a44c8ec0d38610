"""Click options shared by commands that read label files (no commands here: COMMANDS is absent)."""

from __future__ import annotations

import click

from labeltree.datasets.base import UNKNOWN_CHOICES

unknown_option = click.option(
    "--unknown", type=click.Choice(UNKNOWN_CHOICES), default="error", show_default=True,
    help="Label values the taxonomy does not define: 'error' stops with the file and the values, "
         "'ignore' maps them to the taxonomy's ignore value.")
