"""Every op of the table (tests/op_cases.py): each sample on every device and impl against its
float64 reference, outputs poisoned before the call (conftest), shapes and finiteness checked."""

from __future__ import annotations

import numpy as np
import pytest

import hipgrad as hg
from tests.conftest import check
from tests.op_cases import OPS, expected, run

CASES = [pytest.param(name, i, id=f"{name}-{i}")
         for name, info in sorted(OPS.items())
         for i in range(len(info.samples(np.random.default_rng(0))))]


@pytest.mark.parametrize("name, index", CASES)
def test_op_matches_its_float64_reference(device, impl, rng, name, index):
    info = OPS[name]
    if device.split(":")[0] not in info.devices:
        pytest.skip(f"{name} runs on {', '.join(info.devices)} only")
    sample = info.samples(rng)[index]
    got = run(info, sample, device, impl)
    want = expected(info, sample, got)
    assert len(got) == len(want), f"{name}: {len(got)} outputs, the reference has {len(want)}"
    rtol, atol = info.tol
    for k, (g, w) in enumerate(zip(got, want)):
        if w is None:
            continue
        if isinstance(g, hg.Tensor):
            assert g.device == device, f"{name} output {k} is on {g.device}"
        check(g, w, rtol=rtol, atol=atol, what=f"{name} {sample.id} output {k} impl={impl}")
