"""Every test here needs a GPU; where none is usable they skip with the runtime's reason."""

from __future__ import annotations

import pytest

import hipgrad as hg


def pytest_collection_modifyitems(config, items):
    if len(hg.devices()) > 1:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {hg.gpu_unavailable_reason()}")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            item.add_marker(skip)
