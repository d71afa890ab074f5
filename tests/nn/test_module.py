"""Module machinery: state_dict keys and round trips (with torch.nn.Sequential both ways), load
errors, devices, initialisation, seeding, Dropout, BatchNorm statistics, trace labels."""

from __future__ import annotations

import math

import hipgrad as hg
import numpy as np
import pytest

from tests.conftest import check, to_dev
from tests.nn import reference as ref
from tests.nn.cases import import_torch

nn = hg.nn


def small_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 2, 5), nn.GELU(),
                         nn.Linear(5, 3))


def torch_small_cnn(torch):
    t = torch.nn
    return t.Sequential(t.Conv2d(3, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(), t.MaxPool2d(2),
                        t.Flatten(), t.Linear(4 * 3 * 2, 5), t.GELU(), t.Linear(5, 3))


CNN_KEYS = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
            "1.num_batches_tracked", "5.weight", "5.bias", "7.weight", "7.bias"]


def test_state_dict_keys_shapes_and_dtypes():
    sd = small_cnn().state_dict()
    assert list(sd) == CNN_KEYS
    assert sd["0.weight"].shape == (4, 3, 3, 3) and sd["5.weight"].shape == (5, 24)
    assert sd["1.num_batches_tracked"].shape == () and sd["1.num_batches_tracked"].dtype == np.int64
    assert all(v.dtype == np.float32 for k, v in sd.items() if "num_batches" not in k)
    assert [k for k, _ in small_cnn().named_parameters()] == [
        k for k in CNN_KEYS if "running" not in k and "num_batches" not in k]


def test_state_dict_round_trip_and_copies(device, rng):
    a, b = small_cnn().to(device), small_cnn().to(device)
    x = to_dev(rng.standard_normal((2, 3, 6, 4)).astype(np.float32), device)
    a(x)  # moves the running statistics off their defaults
    sd = a.state_dict()
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b[1].num_batches_tracked == 1
    sd["0.weight"][...] = 0.0  # a copy: the model is unchanged
    assert np.abs(a.state_dict()["0.weight"]).sum() > 0
    a.eval(), b.eval()
    check(b(x), a(x).numpy().astype(np.float64), rtol=0, atol=0, what="same weights, same output")


def test_load_state_dict_errors_name_the_key_and_change_nothing(rng):
    m = small_cnn()
    before = m.state_dict()
    sd = small_cnn().state_dict()
    bad = dict(sd)
    bad["5.weight"] = np.zeros((5, 25), np.float32)
    with pytest.raises(ValueError, match=r"'5\.weight'.*\(5, 25\).*\(5, 24\)"):
        m.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "7.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['7\.bias'\]"):
        m.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        m.load_state_dict({**sd, "extra": np.zeros(1)})
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        m.load_state_dict([("0.weight", sd["0.weight"])])
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} changed by a failed load")
    res = m.load_state_dict({**missing, "extra": np.zeros(1)}, strict=False)
    assert res.missing_keys == ["7.bias"] and res.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(m.state_dict()["0.weight"], sd["0.weight"])
    np.testing.assert_array_equal(m.state_dict()["7.bias"], before["7.bias"])


def test_load_accepts_hipgrad_tensors():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict({"weight": a.weight.data, "bias": a.bias.data.numpy().astype(np.float64)})
    np.testing.assert_array_equal(b.weight.data.numpy(), a.weight.data.numpy())
    assert b.bias.data.dtype == np.float32


def _train_steps(model, x, labels, steps, device):
    opt = hg.optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        model.zero_grad()
        losses.append(loss_fn(model(to_dev(x, device)), labels))
        model.backward(loss_fn.backward())
        opt.step()
    return losses


def test_torch_sequential_loads_our_state_dict_and_trains_alike(device, rng):
    torch = import_torch()
    model = small_cnn().to(device)
    tmodel = torch_small_cnn(torch)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((5, 3, 6, 5)).astype(np.float32)
    labels = rng.integers(0, 3, size=5)
    losses = _train_steps(model, x, labels, 3, device)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    for i in range(3):
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                 torch.from_numpy(labels))
        loss.backward()
        topt.step()
        assert losses[i] == pytest.approx(loss.item(), rel=1e-4, abs=1e-5)
    for k, v in tmodel.state_dict().items():
        check(model.state_dict()[k].astype(np.float64), v.double().numpy(), rtol=1e-3, atol=1e-4,
              what=f"{k} after 3 SGD steps")
    model.eval(), tmodel.eval()
    with torch.no_grad():
        check(model(to_dev(x, device)), tmodel(torch.from_numpy(x)).double().numpy(), rtol=1e-3,
              atol=1e-4, what="eval output after training")


def test_we_load_a_torch_state_dict_directly(device, rng):
    torch = import_torch()
    tmodel = torch_small_cnn(torch)
    tmodel.train()
    x = rng.standard_normal((4, 3, 6, 5)).astype(np.float32)
    tmodel(torch.from_numpy(x))  # running statistics off their defaults
    tmodel.eval()
    model = small_cnn().to(device)
    model.load_state_dict(tmodel.state_dict())  # torch tensors (with requires_grad) as values
    assert model[1].num_batches_tracked == 1
    model.eval()
    with torch.no_grad():
        check(model(to_dev(x, device)), tmodel(torch.from_numpy(x)).double().numpy(),
              what="eval output from torch's weights")


def test_to_device_moves_everything(device, rng):
    model = small_cnn()
    x = rng.standard_normal((2, 3, 6, 4)).astype(np.float32)
    model(x)
    model.backward(hg.tensor(rng.standard_normal((2, 3)).astype(np.float32)))
    model.to(device)
    assert model.device == device
    assert all(p.device == device and p.grad.device == device for p in model.parameters())
    assert all(b.device == device for _, b in model.named_buffers())
    y = model(x)  # NumPy input goes to the model's device
    assert y.device == device and tuple(y.shape) == (2, 3)
    model.to("cpu")
    assert all(p.device == "cpu" for p in model.parameters())


def test_default_initialisation_follows_pytorch():
    hg.manual_seed(3)
    lin, conv = nn.Linear(300, 200), nn.Conv2d(8, 64, 5, groups=2)
    w, b = lin.weight.data.numpy(), lin.bias.data.numpy()
    bound = 1 / math.sqrt(300)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert np.abs(b).max() <= bound
    cbound = 1 / math.sqrt(4 * 25)  # fan_in = C/groups * R * S
    cw = conv.weight.data.numpy()
    assert np.abs(cw).max() <= cbound and cw.std() == pytest.approx(cbound / math.sqrt(3), rel=0.05)
    assert np.abs(conv.bias.data.numpy()).max() <= cbound
    e = nn.Embedding(1000, 40).weight.data.numpy()
    assert e.mean() == pytest.approx(0, abs=0.02) and e.std() == pytest.approx(1, rel=0.02)
    bn = nn.BatchNorm2d(5)
    assert (bn.weight.data.numpy() == 1).all() and (bn.bias.data.numpy() == 0).all()
    assert (bn.running_var.numpy() == 1).all() and (bn.running_mean.numpy() == 0).all()


def test_manual_seed_makes_initialisation_and_dropout_repeatable():
    def run():
        m = nn.Sequential(nn.Linear(20, 30), nn.Dropout(0.5))
        return m.state_dict(), m(np.ones((4, 20), np.float32)).numpy()
    hg.manual_seed(7)
    sd1, y1 = run()
    hg.manual_seed(7)
    sd2, y2 = run()
    hg.manual_seed(8)
    sd3, _ = run()
    np.testing.assert_array_equal(sd1["0.weight"], sd2["0.weight"])
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(sd1["0.weight"], sd3["0.weight"])
    with pytest.raises(ValueError, match="seed"):
        hg.manual_seed(-1)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_scales_kept_elements_and_routes_gradients(device, rng, p):
    hg.manual_seed(int(rng.integers(2**31)))
    layer = nn.Dropout(p).to(device)
    x = rng.uniform(0.5, 1.5, size=(37, 129)).astype(np.float32)
    y = layer(to_dev(x, device)).numpy()
    kept = y != 0
    assert abs(1 - kept.mean() - p) < 4 * math.sqrt(p * (1 - p) / x.size)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-6)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = layer.backward(to_dev(dy, device))
    check(dx, np.where(kept, dy / (1 - p), 0.0), rtol=1e-6, atol=0, what="dropout dx")
    y2 = layer(to_dev(x, device)).numpy()
    assert not np.array_equal(y2 != 0, kept), "a fresh mask every forward"


def test_dropout_edge_probabilities_and_eval(device, rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    for p, expect_y, expect_dx in [(0.0, x, dy), (1.0, 0 * x, 0 * dy)]:
        layer = nn.Dropout(p).to(device)
        check(layer(to_dev(x, device)), expect_y.astype(np.float64), rtol=0, atol=0,
              what=f"p={p} y")
        check(layer.backward(to_dev(dy, device)), expect_dx.astype(np.float64), rtol=0, atol=0)
    layer = nn.Dropout(0.5).to(device).eval()
    check(layer(to_dev(x, device)), x.astype(np.float64), rtol=0, atol=0, what="eval is identity")
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("shape", [(5, 3, 4, 2), (9, 3)])
def test_batchnorm_running_statistics_and_eval(device, rng, shape):
    bn = nn.BatchNorm2d(3, momentum=0.25).to(device)
    xs = [rng.standard_normal(shape).astype(np.float32) * 2 + 1 for _ in range(2)]
    mean, var = np.zeros(3), np.ones(3)
    axes = (0,) + tuple(range(2, len(shape)))
    for x in xs:
        bn(to_dev(x, device))
        n = x.size // 3
        mean = 0.75 * mean + 0.25 * x.mean(axis=axes)
        var = 0.75 * var + 0.25 * x.var(axis=axes) * n / (n - 1)
    assert bn.num_batches_tracked == 2
    check(bn.running_mean, mean, what="running_mean")
    check(bn.running_var, var, what="running_var")
    bn.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    params = {k: v.astype(np.float64) for k, v in bn.state_dict().items()}
    check(bn(to_dev(x, device)), ref.batch_norm_eval(x.astype(np.float64), params, 1e-5),
          what="eval uses the running statistics")
    assert bn.num_batches_tracked == 2
    check(bn.running_mean, mean, what="eval leaves running_mean alone")


def test_batchnorm_rejects_wrong_input():
    with pytest.raises(ValueError, match=r"4-D.*3 channels.*\(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match="3-D"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 5, 5), np.float32))


def test_layer_input_checks_name_the_expected_form():
    with pytest.raises(ValueError, match=r"Linear: x must have shape \(\.\.\., 4\)"):
        nn.Linear(4, 2)(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d: x must have shape \(N, 3, H, W\)"):
        nn.Conv2d(3, 2, 3)(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.MaxPool2d("2")
    with pytest.raises(TypeError, match="idx must hold integers"):
        nn.Embedding(5, 2)(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="Residual: body gives shape"):
        nn.Residual(nn.Linear(3, 2))(np.zeros((1, 3), np.float32))


def test_embedding_accepts_int32_numpy_and_repeated_indices(device, rng):
    emb = nn.Embedding(4, 3).to(device)
    idx = np.array([[1, 1, 3], [0, 1, 1]], np.int32)
    y = emb(idx)
    w = emb.weight.data.numpy()
    check(y, w[idx].astype(np.float64), rtol=0, atol=0, what="lookup")
    dy = rng.standard_normal((2, 3, 3)).astype(np.float32)
    assert emb.backward(to_dev(dy, device)) is None
    expect = np.zeros((4, 3))
    np.add.at(expect, idx.reshape(-1), dy.reshape(-1, 3))
    check(emb.weight.grad, expect, what="repeated indices add up")


def test_sequential_passes_numpy_indices_to_embedding(device):
    model = nn.Sequential(nn.Embedding(6, 3), nn.Flatten(), nn.Linear(6, 2)).to(device)
    y = model(np.array([[1, 5], [0, 0]], np.int32))
    assert tuple(y.shape) == (2, 2) and y.device == device


def test_parameter_and_module_registration():
    p = nn.Parameter(np.ones((2, 3)))
    assert p.data.dtype == np.float32 and p.shape == (2, 3) and p.grad is None and p.requires_grad
    with pytest.raises(TypeError, match="float32"):
        nn.Parameter(hg.tensor(np.ones(3, np.int64)))

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)
            self.b.weight = self.a.weight

    tied = Tied()
    assert [k for k, _ in tied.named_parameters()] == ["a.weight", "a.bias", "b.bias"]
    assert list(tied.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]

    class Forgot(nn.Module):
        def __init__(self):
            self.w = 1

    with pytest.raises(AttributeError, match="Module.__init__"):
        Forgot()
    seq = nn.Sequential(nn.Linear(2, 2)).append(nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[1], nn.ReLU) and len(seq[:1]) == 1
    assert "Linear(in_features=2, out_features=2, bias=True)" in repr(seq)
    model = small_cnn().requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())


def test_set_impl_reaches_every_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 2)))
    model.set_impl("handwritten")
    assert all(m.impl == "handwritten" for m in model.modules())
    with hg.trace() as t:
        model.backward(model(np.ones((2, 3), np.float32)))
    gemms = [r for r in t.ops if r["op"] == "gemm" and not r["tuning"]]
    assert len(gemms) == 6 and not any("openblas" in r["impl"] for r in gemms)
    with pytest.raises(ValueError, match="impl must be one of"):
        model.set_impl("fastest")


def test_trace_labels_ops_with_the_layer_path(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Residual(nn.Sequential(nn.Linear(4, 4))))
    x = rng.standard_normal((2, 3)).astype(np.float32)
    with hg.trace() as t:
        model.backward(model(x))
    layers = {r["layer"] for r in t.ops if not r["tuning"]}
    assert {"0:Linear", "1.body.0:Linear"} <= layers


def test_constructor_arguments_are_never_silently_coerced(rng):
    """Sizes must be ints, labels whole class numbers, hyper-parameters numbers: each refusal
    names the argument (PyTorch refuses the same)."""
    from hipgrad.data import DataLoader, Dataset

    for make, message in ((lambda: nn.Linear(4.5, 2), "Linear: in_features must be an int, got 4.5"),
                          (lambda: nn.Conv2d(2, 2, 3, groups=2.0), "Conv2d: groups must be an int"),
                          (lambda: nn.Embedding(True, 3), "Embedding: num_embeddings must be an int"),
                          (lambda: nn.BatchNorm2d("3"), "BatchNorm2d: num_features must be an int"),
                          (lambda: hg.optim.Adam(nn.Linear(2, 2).parameters(), lr=None),
                           "Adam: lr must be a real number.*got None"),
                          (lambda: hg.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum="0.9"),
                           "SGD: momentum must be a real number")):
        with pytest.raises(TypeError, match=message):
            make()
    with pytest.raises(ValueError, match="momentum=None"):
        nn.BatchNorm2d(3, momentum=None)
    images = rng.standard_normal((2, 1, 3, 3))
    with pytest.raises(ValueError, match="labels must be integer class indices"):
        Dataset(images, np.array([0.7, 1.9]))
    assert Dataset(images, np.array([1.0, 0.0])).labels.tolist() == [1, 0]  # whole numbers are fine
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got True"):
        DataLoader(Dataset(images, np.array([0, 1])), True)
    lin = nn.Linear(2, 3)  # a nested list is an array
    x = rng.standard_normal((4, 2))
    np.testing.assert_allclose(lin(x.tolist()).numpy(),
                               x @ lin.weight.data.numpy().T.astype(np.float64) + lin.bias.data.numpy(),
                               rtol=1e-5, atol=1e-6)
