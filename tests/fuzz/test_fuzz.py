"""The CI budget of the fuzz suite: a fixed seed, a few thousand generated cases over every
public op, layer, optimizer and scheduler, the engine and the checkpoint / engine / ONNX
readers, each in a crash-isolating worker. A crash, a hang, an exception of the wrong kind or
one that names nothing, or a valid call that disagrees with its float64 reference fails the
test and prints each case's call and the command that replays it.

HIPGRAD_FUZZ_CASES / HIPGRAD_FUZZ_SEED change the budget and the seed (tests/fuzz/README.md)."""

from __future__ import annotations

import os

import pytest

from .run import campaign, report

FAMILIES = ["bad_op", "valid_op", "bad_layer", "bad_optim", "file"]
SHARE = {"bad_op": 0.4, "valid_op": 0.2, "bad_layer": 0.15, "bad_optim": 0.1, "file": 0.15}


@pytest.mark.parametrize("family", FAMILIES)
def test_fuzz(family):
    total = int(os.environ.get("HIPGRAD_FUZZ_CASES", "3000"))
    seed = int(os.environ.get("HIPGRAD_FUZZ_SEED", "20261207"))
    n, failures, stats = campaign(max(1, int(total * SHARE[family])), seed, workers=2,
                                  families=[family])
    assert n > 0
    assert not failures, f"{len(failures)} of {n} cases failed ({dict(stats)}):\n{report(failures)}"
