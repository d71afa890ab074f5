"""Every test here needs a GPU: all carry the `gpu` mark (so `pytest -m gpu` selects them), and
where no GPU is usable they skip with the runtime's reason."""

from __future__ import annotations

import pytest

import hipgrad as hg


def pytest_collection_modifyitems(config, items):
    have_gpu = len(hg.devices()) > 1
    skip = pytest.mark.skip(reason=f"no GPU: {hg.gpu_unavailable_reason()}")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not have_gpu:
                item.add_marker(skip)
