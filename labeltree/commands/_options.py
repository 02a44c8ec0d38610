"""Click options shared by commands (no commands here: COMMANDS is absent): one spelling and one help
text for each notion that several commands take (the tree, sizes, progress, unknown label values)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from labeltree.errors import LabeltreeError
from labeltree.resources import NAME_OR_PATH_RULE
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


#: the rule for a DATASET argument, said in each command's help
DATASET_RULE = f"DATASET is {NAME_OR_PATH_RULE}; a folder of that name here never replaces the bundled one."


class OldNamesHidden(click.Option):
    """An option whose later names are old spellings (`--hierarchy` for `--tree`): still accepted, not
    shown in --help, so that there is one word for one thing."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = self.opts[:1], self.secondary_opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = shown


def tree_option(dest: str, help: str) -> Callable[[Any], Any]:
    """`--tree TREE` (old name `--hierarchy`): a bundled tree name or a tree file."""
    return click.option("--tree", "--hierarchy", dest, cls=OldNamesHidden, default=None, metavar="TREE",
                        help=f"{help} TREE is {NAME_OR_PATH_RULE}.")


def progress_option(*old_names: str) -> Callable[[Any], Any]:
    """`--progress/--no-progress` (default: on), the one spelling of 'no progress bar'; `old_names` are
    earlier flags that meant only that (kept, hidden)."""
    return click.option("--progress/--no-progress", *(f" /{n}" for n in old_names), cls=OldNamesHidden,
                        default=True, show_default=True, help="Progress bar on stderr.")


def parse_size(text: str, option: str, allow_native: bool = False) -> tuple[int, int] | None:
    """'WIDTHxHEIGHT' (as image sizes are written: 1024x512 is wide) -> (width, height); 'native' -> None
    where allowed. Every size option of the command line takes this form."""
    if allow_native and text.strip().lower() == "native":
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        native = " or 'native'" if allow_native else ""
        raise LabeltreeError(f"{option}: expected WIDTHxHEIGHT like 1024x512{native}, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise LabeltreeError(f"{option}: sizes must be positive, got {text!r}")
    from labeltree.infer.onnx_meta import MAX_SIDE  # images beyond it exhaust memory before any check

    if max(w, h) > MAX_SIDE:
        raise LabeltreeError(f"{option}: at most {MAX_SIDE} pixels per side, got {text!r}")
    return w, h
