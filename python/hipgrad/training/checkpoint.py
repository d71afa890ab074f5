"""Checkpoints: the weights in safetensors plus a JSON sidecar that says how to continue.

    runs/digits/model.safetensors   the model's state_dict (PyTorch key names), nothing else,
                                    so `safetensors.torch.load_file` + `load_state_dict` work
    runs/digits/model.json          format and hipgrad versions, the architecture spec, epoch,
                                    optimizer and scheduler state, RNG state, history, the data's
                                    preprocessing, and the SHA-256 of the weights file

Writes are atomic: both files go to temporary files in the same directory (flushed and fsynced),
then the weights and then the sidecar are renamed over the old ones. A failure while writing
leaves the previous pair as it was; the digest in the sidecar lets `load_checkpoint` tell a
mismatched pair (a crash between the two renames) from a good one. Load errors name the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable

import numpy as np

FORMAT = "hipgrad-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, mismatched or from a newer format."""


def _weights_file_of(sidecar: Path) -> Path | None:
    """The weights file a sidecar names (its "weights_file", beside it), if that file exists."""
    try:
        name = json.loads(sidecar.read_text()).get("weights_file")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    if isinstance(name, str) and name and Path(name).name == name and (sidecar.parent / name).is_file():
        return sidecar.parent / name
    return None


def check_path(path: Any, what: str) -> str:
    """`path` as a str: a non-empty str or os.PathLike (TypeError / ValueError naming `what`;
    an empty path would mean the current directory)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what}: path must be a non-empty file or directory name, got {path!r}")
    return text


def resolve_paths(path: str | os.PathLike, *, reading: bool = False) -> tuple[Path, Path]:
    """(weights, sidecar) for a weights file, a sidecar, or a directory holding model.safetensors.
    X.safetensors pairs with X.json; a weights file of any other name (epoch.1, model.pt) with
    that name + ".json", so that epoch.1 and epoch.2 never share a sidecar. With `reading`, a
    pair written before that rule (model.pt beside model.json) is found too: through the
    sidecar's own "weights_file"."""
    p = Path(check_path(path, "checkpoint"))
    if p.is_dir() or (not p.exists() and not p.suffix):  # a run directory
        p = p / WEIGHTS_NAME
    if p.suffix == ".json":  # X.json -> X.safetensors, or X (written as X + ".json")
        weights = p.with_suffix(".safetensors")
        named = _weights_file_of(p) if reading else None
        if named is not None:
            return named, p
        bare = p.with_suffix("")
        return (bare if not weights.exists() and bare.suffix and bare.is_file() else weights), p
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    sidecar = p.with_name(p.name + ".json")
    if reading and not sidecar.exists():
        old = p.with_suffix(".json")
        if old.is_file() and _weights_file_of(old) == p:
            return p, old
    return p, sidecar


# --- encoding optimizer / scheduler / RNG state as JSON (arrays bit-exact, int keys kept) ----

def to_jsonable(obj: Any) -> Any:
    """Nested dicts/lists of numbers, strings, NumPy arrays and hg.Tensors as JSON-able data;
    arrays are stored bit-exact (base64 of their bytes), non-string dict keys are kept."""
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: to_jsonable(v) for k, v in obj.items()}
        return {"__items__": [[to_jsonable(k), to_jsonable(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "numpy") and hasattr(obj, "device") and not isinstance(obj, np.ndarray):
        obj = obj.numpy()  # an hg.Tensor
    if isinstance(obj, np.ndarray):
        arr = np.asarray(obj, order="C")
        return {"__ndarray__": {"dtype": arr.dtype.str, "shape": list(arr.shape),
                                "data": base64.b64encode(arr.tobytes()).decode("ascii")}}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} in the sidecar")


def from_jsonable(obj: Any) -> Any:
    """The inverse of `to_jsonable` (arrays come back as NumPy arrays)."""
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            a = obj["__ndarray__"]
            data = base64.b64decode(a["data"])
            return np.frombuffer(data, np.dtype(a["dtype"])).reshape(a["shape"]).copy()
        if set(obj) == {"__items__"}:
            return {_hashable(from_jsonable(k)): from_jsonable(v) for k, v in obj["__items__"]}
        return {k: from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    return obj


def _hashable(k: Any) -> Any:
    return tuple(_hashable(v) for v in k) if isinstance(k, list) else k


# --- RNG state --------------------------------------------------------------------------------

def rng_state() -> dict:
    """The state of hipgrad's generator (parameter initialisation, dropout seeds)."""
    from ..random import generator
    return generator().bit_generator.state


def set_rng_state(state: dict | None) -> None:
    """Put hipgrad's generator back in a state `rng_state` returned."""
    from ..random import generator
    if state is not None:
        generator().bit_generator.state = state


# --- writing ----------------------------------------------------------------------------------

def _write_temp(directory: Path, final_name: str, data: bytes) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{final_name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, model: Any, *, optimizer: Any = None,
                    scheduler: Any = None, epoch: int | None = None, spec: dict | None = None,
                    history: list | None = None, extra: dict | None = None) -> Path:
    """Write `model`'s weights and the sidecar atomically; returns the weights path.

    Raises ValueError (naming the tensor) rather than write a non-finite weight.
    """
    from safetensors.numpy import save as st_save

    from .._version import __version__

    weights_path, sidecar_path = resolve_paths(path)
    state = {k: np.asarray(v, order="C") for k, v in model.state_dict().items()}
    for k, v in state.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise ValueError(f"save_checkpoint: refusing to write non-finite weights ({k} holds "
                             f"NaN or inf) to {weights_path}")
    # One metadata entry only: safetensors writes several in a per-process random order, and
    # equal weights should give equal files.
    blob = st_save(state, metadata={"format": FORMAT})
    sidecar = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "hipgrad_version": __version__,
        "weights_file": weights_path.name, "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "spec": spec if spec is not None else getattr(model, "spec", None),
        "epoch": epoch,  # a NaN / inf figure is null, as in history.json: the sidecar is strict JSON
        "history": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                    for r in history or []],
        "optimizer": None if optimizer is None else {
            "type": type(optimizer).__name__, "state": to_jsonable(optimizer.state_dict())},
        "scheduler": None if scheduler is None else {
            "type": type(scheduler).__name__, "state": to_jsonable(scheduler.state_dict())},
        "rng": to_jsonable(rng_state()),
        "extra": to_jsonable(extra or {}),
    }
    text = json.dumps(sidecar, indent=1).encode()
    directory = weights_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        temps.append(_write_temp(directory, weights_path.name, blob))
        temps.append(_write_temp(directory, sidecar_path.name, text))
        os.replace(temps[0], weights_path)
        os.replace(temps[1], sidecar_path)
    finally:
        for t in temps:
            if t.exists():
                t.unlink()
    _fsync_dir(directory)
    return weights_path


# --- reading ----------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """What `load_checkpoint` read: `weights` (name -> array) and the sidecar `meta`."""

    weights: dict[str, np.ndarray]
    meta: dict
    path: Path
    _decoded: dict = field(default_factory=lambda: {"optimizer": None, "scheduler": None,
                                                    "rng": None, "extra": None})

    @property
    def spec(self) -> dict | None:
        return self.meta.get("spec")

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch") or 0)  # an int >= 0 or None (checked on loading)

    @property
    def history(self) -> list:
        return list(self.meta.get("history") or [])

    @property
    def extra(self) -> dict:
        return self._decoded["extra"] or {}

    def build_model(self, device: str = "cpu") -> Any:
        """The model its spec describes, with these weights, on `device`."""
        from .models import model_from_spec
        if not self.spec:
            raise CheckpointError(f"{self.path}: the sidecar holds no architecture spec")
        try:
            model = model_from_spec(self.spec)
            model.load_state_dict(self.weights, strict=True)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, MemoryError) as e:
            raise CheckpointError(f"{self.path}: the sidecar's spec does not build a model "
                                  f"({type(e).__name__}: {e})") from None
        return model.to(device)

    def restore(self, model: Any, optimizer: Any = None, scheduler: Any = None) -> None:
        """Load the weights into `model` and, where given, the optimizer and scheduler state;
        set hipgrad's RNG state to the one saved. The optimizer and scheduler types are checked
        before anything is loaded, and a saved state that does not fit them puts the model's
        weights back as they were before raising."""
        pending = []
        for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler")):
            if obj is None:
                continue
            saved = self.meta.get(key)
            if saved is None:
                raise CheckpointError(f"{self.path}: no {key} state saved")
            saved = {"type": saved["type"], "state": self._decoded[key]}
            if saved["type"] != type(obj).__name__:
                raise CheckpointError(f"{self.path}: {key} state is for {saved['type']}, "
                                      f"not {type(obj).__name__}")
            pending.append((obj, saved))
        before = model.state_dict()  # copies: put back if a state below does not fit
        model.load_state_dict(self.weights, strict=True)
        done = []
        try:
            for obj, saved in pending:
                old = obj.state_dict()
                try:
                    obj.load_state_dict(saved["state"])
                except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
                    raise CheckpointError(f"{self.path}: the saved {type(obj).__name__} state does "
                                          f"not fit ({type(e).__name__}: {e})") from None
                done.append((obj, old))
        except Exception:
            for obj, old in reversed(done):
                obj.load_state_dict(old)
            model.load_state_dict(before, strict=True)
            raise
        set_rng_state(self._decoded["rng"])


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a weights file and its sidecar (path: either file, or their directory)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load
    weights_path, sidecar_path = resolve_paths(path, reading=True)
    try:
        meta = json.loads(sidecar_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{sidecar_path}: checkpoint sidecar not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{sidecar_path}: corrupt or truncated checkpoint sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{sidecar_path}: not a hipgrad checkpoint sidecar")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{sidecar_path}: checkpoint format version {version!r} is newer than "
                              f"this hipgrad reads ({FORMAT_VERSION}); upgrade hipgrad")
    try:
        blob = weights_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: checkpoint weights not found") from None
    except OSError as e:
        raise CheckpointError(f"{weights_path}: cannot read ({e.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("weights_sha256"):
        raise CheckpointError(f"{weights_path} does not match its sidecar {sidecar_path} (SHA-256 "
                              "differs): the file is truncated or corrupt, or the pair was not "
                              "written together")
    try:
        weights = st_load(blob)
    except SafetensorError as e:
        raise CheckpointError(f"{weights_path}: corrupt safetensors data ({e})") from None
    ck = Checkpoint(weights, meta, weights_path)
    ck._decoded = _checked_sidecar(meta, sidecar_path)
    return ck


def _checked_sidecar(meta: dict, sidecar_path: Path) -> dict[str, Any]:
    """The sidecar's fields checked by type once, on loading (a hand-edited or corrupt sidecar is
    a CheckpointError naming it, never an AttributeError later); returns the decoded optimizer,
    scheduler and RNG states."""
    def bad(what: str, why: str) -> CheckpointError:
        return CheckpointError(f"{sidecar_path}: {what} {why}")
    spec, epoch, history = meta.get("spec"), meta.get("epoch"), meta.get("history")
    if spec is not None and not isinstance(spec, dict):
        raise bad("spec", f"must be an object or null, got {type(spec).__name__}")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise bad("epoch", f"must be an int >= 0 or null, got {epoch!r}")
    if history is not None and not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
        raise bad("history", "must be a list of objects")
    decoded: dict[str, Any] = {}
    for key in ("optimizer", "scheduler"):
        saved = meta.get(key)
        if saved is None:
            decoded[key] = None
            continue
        if not isinstance(saved, dict) or not isinstance(saved.get("type"), str) or "state" not in saved:
            raise bad(key, "must be an object with a 'type' string and a 'state'")
        decoded[key] = _decode(saved["state"], bad, key)
    for key in ("rng", "extra"):
        decoded[key] = _decode(meta.get(key), bad, key)
    if decoded["extra"] is not None and not isinstance(decoded["extra"], dict):
        raise bad("extra", "must be an object")
    if decoded["rng"] is not None:
        try:  # applied to a scratch generator: a state that does not fit fails here
            np.random.PCG64().state = decoded["rng"]
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            raise bad("rng", f"is not a generator state ({type(e).__name__}: {e})") from None
    return decoded


def _decode(value: Any, bad: Any, what: str) -> Any:
    try:
        return from_jsonable(value)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, MemoryError,
            binascii.Error) as e:
        raise bad(what, f"is malformed ({type(e).__name__}: {e})") from None


def load_model(path: str | os.PathLike, device: str = "cpu") -> Any:
    """The model stored at `path`, rebuilt from its spec, in eval mode."""
    model = load_checkpoint(path).build_model(device)
    model.eval()
    return model


def freeze(model: Any, names: Iterable[str]) -> list[str]:
    """Set requires_grad=False on the parameters whose names equal or start with one of
    `names` + "." (e.g. "0" freezes "0.weight" and "0.bias"); returns the frozen names."""
    names = list(names)
    frozen = []
    for pname, p in model.named_parameters():
        if any(pname == n or pname.startswith(n + ".") for n in names):
            p.requires_grad = False
            frozen.append(pname)
    unused = [n for n in names if not any(f == n or f.startswith(n + ".") for f in frozen)]
    if unused:
        known = sorted({pname.rsplit(".", 1)[0] for pname, _ in model.named_parameters()})
        raise ValueError(f"freeze: no parameters under {unused}; layers with parameters: {known}")
    return frozen


def finetune_model(path: str | os.PathLike, num_classes: int | None = None,
                   freeze_layers: Iterable[str] = (), device: str = "cpu") -> Any:
    """A model to fine-tune: the checkpoint's architecture and weights, with a fresh output
    layer where `num_classes` differs (every tensor whose shape changes is left at its new
    initial value), and the layers in `freeze_layers` frozen (requires_grad=False)."""
    from .models import model_from_spec
    ckpt = load_checkpoint(path)
    if not ckpt.spec:
        raise CheckpointError(f"{ckpt.path}: the sidecar holds no architecture spec")
    spec = dict(ckpt.spec)
    if num_classes is not None:
        spec["num_classes"] = int(num_classes)
    model = model_from_spec(spec)
    own = model.state_dict()
    keep = {k: v for k, v in ckpt.weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict({**own, **keep}, strict=True)
    freeze(model, freeze_layers)
    return model.to(device)
