"""The shape of tree files as pydantic models: which keys exist, what each holds (docs/taxonomy-format.md).

A file is checked against its model where it is read, so a misspelt key, a list where a mapping belongs
or a missing section is one line naming the file, the line and the key. What the models cannot see
(node names unique, classes and nodes that exist, datasets listed and mapped) is checked by
`tree_file` while it builds the tree, with the same kind of line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from labeltree.core.yamlio import check_model

Name = Annotated[str, Field(min_length=1)]
ClassRef = int | str  # a class by id, name, readable name or synonym
Entries = Annotated[list[Any], Field(min_length=1, description="node names or 'Name: [children]' entries")]


class _Strict(BaseModel):
    # numbers are names too (a node '2000', a dataset '1'): read as text, as the YAML file shows them
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        """A key written with nothing under it (`mappings:`, `ignore:`) reads as absent (its default)."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class MappingSpec(_Strict):
    """mappings.DATASET: where each class of one dataset lands in the tree."""

    map: dict[ClassRef, str | None] = Field(default_factory=dict, description="'class: node' lines")
    ignore: list[ClassRef] = Field(default_factory=list, description="classes that carry no supervision")
    by_name: bool = False
    inherit: str | None = None  # a dataset mapped earlier in the file whose mapping this one starts from


class Override(_Strict):
    dataset: Name
    classifier: Name
    supervise: bool


class Supervision(_Strict):
    """Which datasets train which classifier (docs/design.md §2.3)."""

    exclude_single_child: bool | None = None  # None: true in a tree, the base's in an extension
    overrides: list[Override] = Field(default_factory=list, description="{dataset, classifier, supervise} entries")


_DATASETS = "dataset names or taxonomy files"


class TreeFile(_Strict):
    """A full tree file: the tree, its datasets and their mappings."""

    name: str | None = None
    description: str = ""
    datasets: list[str] = Field(min_length=1, description=_DATASETS)
    evaluation_datasets: list[str] = Field(default_factory=list, description=_DATASETS)
    tree: Entries
    mappings: dict[str, MappingSpec] = Field(description="dataset: mapping lines")
    supervision: Supervision = Field(default_factory=Supervision,
                                     description="exclude_single_child / overrides keys")


class RulesFile(TreeFile):
    """`labeltree merge --rules`: a tree file whose mappings may be partial or absent."""

    datasets: list[str] = Field(default_factory=list, description=_DATASETS)
    mappings: dict[str, MappingSpec] = Field(default_factory=dict, description="dataset: mapping lines")


class ExtensionFile(_Strict):
    """A tree file with `extends:` (docs/taxonomy-format.md, Extending a tree file)."""

    name: str | None = None
    description: str = ""
    extends: Name
    include: list[Any] | None = None
    datasets: list[str] = Field(default_factory=list, description=_DATASETS)
    evaluation_datasets: list[str] = Field(default_factory=list, description=_DATASETS)
    add: dict[str, Entries] = Field(default_factory=dict, description="'Parent node: [new children]' lines")
    mappings: dict[str, MappingSpec] = Field(default_factory=dict, description="dataset: mapping lines")
    supervision: Supervision = Field(default_factory=Supervision,
                                     description="exclude_single_child / overrides keys")

    @field_validator("include", mode="before")
    @classmethod
    def _include(cls, v: Any) -> Any:
        if not isinstance(v, list) or not v:
            raise ValueError("expected a list of extension files (bundled names or paths)")
        for k, ref in enumerate(v):
            if not isinstance(ref, str) or not ref.strip():
                raise ValueError(f"entry {k + 1} is {ref!r}; each entry names an extension file "
                                 "(a bundled tree name or a path to a .yaml file)")
        return v


EXTENSION_KEYS = set(ExtensionFile.model_fields)


def tree_spec(data: Any, path: Path, rules: bool = False) -> TreeFile:
    """A full tree file's data, checked (file:line of the first problem)."""
    return check_model(RulesFile if rules else TreeFile, data, path, "tree file")


def extension_spec(data: Any, path: Path) -> ExtensionFile:
    """An extension's data, checked (file:line of the first problem)."""
    return check_model(ExtensionFile, data, path, "tree file")

