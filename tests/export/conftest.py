"""Shared by the export tests."""

from collections.abc import Iterator

import pytest
from builders import one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield
