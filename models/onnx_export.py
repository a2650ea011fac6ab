"""Exporting the classifier to ONNX: export, check, embed what serving needs, optimize offline.

The exported file is self-describing: preprocessing, class names and threshold travel in its
`metadata_props`, read back by the torch-free `models.onnx_runtime`. Proving the export matches PyTorch is
`models.onnx_parity`'s job.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import torch
from timm.layers.conv2d_same import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import nn
from torch.jit import TracerWarning

from inspection.atomic import atomic_target
from inspection.preprocessing import PreprocessSpec
from models.classifier import DefectClassifier
from models.onnx_runtime import INPUT_NAME, MAP_OUTPUT, METADATA_KEY_PREFIX, OUTPUT_NAMES

OPSET = 17


def static_same_padding(model: nn.Module, image_size: int) -> nn.Module:
    """Replace timm's Conv2dSame (pads computed from the input shape at run time) by a fixed pad + conv.

    Traced as is, each exports as a Shape/Gather/Ceil/Pad chain that neither ORT nor onnxscript folds away, as
    the batch dimension is dynamic. The input size is fixed by the spec, so the pads are known now.
    """
    sizes: dict[str, tuple[int, int]] = {}

    def recorder(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            sizes[name] = (int(args[0].shape[-2]), int(args[0].shape[-1]))

        return record

    hooks = [
        module.register_forward_pre_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, Conv2dSame)
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    for name, size in sizes.items():
        same = model.get_submodule(name)
        assert isinstance(same, Conv2dSame)
        conv = nn.Conv2d(
            same.in_channels,
            same.out_channels,
            same.kernel_size,  # type: ignore[arg-type]
            stride=same.stride,  # type: ignore[arg-type]
            padding=0,
            dilation=same.dilation,  # type: ignore[arg-type]
            groups=same.groups,
            bias=same.bias is not None,
        )
        conv.weight, conv.bias = same.weight, same.bias
        left, right, top, bottom = pad_same_arg(
            list(size), list(same.kernel_size), list(same.stride), list(same.dilation)
        )
        model.set_submodule(name, nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv))
    return model


@contextmanager
def quiet_legacy_exporter() -> Iterator[None]:
    """torch.no_grad, and the legacy (TorchScript) exporter's known, harmless noise silenced, which would otherwise
    reach every `inspection export` user: its deprecation notice, F.pad's reversed-slice pads that ORT folds when
    it loads the graph, and the classifier's map upsampling matrices built from the (fixed) sizes: constants, as
    intended."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python integer", category=TracerWarning)
        warnings.filterwarnings("ignore", message="torch.from_numpy results are registered", category=TracerWarning)
        yield


def _set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Store each entry JSON-encoded under `inspection.<name>`, replacing earlier values of those keys."""
    encoded = {f"{METADATA_KEY_PREFIX}{name}": json.dumps(value, sort_keys=True) for name, value in metadata.items()}
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in encoded]
    del proto.metadata_props[:]
    for key, value in [*kept, *encoded.items()]:
        proto.metadata_props.add(key=key, value=value)


def update_onnx_metadata(path: Path, updates: dict[str, Any]) -> Path:
    """Replace some metadata entries of an ONNX file in place (atomically), keeping the others and the graph."""
    proto = onnx.load(str(path))
    _set_metadata(proto, updates)
    with atomic_target(Path(path)) as tmp:
        onnx.save(proto, str(tmp))
    return Path(path)


def export_classifier(model: DefectClassifier, spec: PreprocessSpec, path: Path, metadata: dict[str, Any]) -> Path:
    """Export to ONNX (batch dynamic, HxW fixed by `spec`), run onnx.checker, embed `metadata`; atomic write.

    Outputs: `defect_probability`, `type_probabilities` and the class-activation map `anomaly_map` (N,1,S,S).
    """
    # A copy: the caller's model keeps its train/eval mode and its modules.
    exportable = static_same_padding(copy.deepcopy(model).eval(), spec.image_size)
    dummy = torch.zeros(1, 3, spec.image_size, spec.image_size)
    batch_axis = {0: "batch"}
    output_names = [*OUTPUT_NAMES, MAP_OUTPUT]  # the order of ClassifierOutput's fields
    path = Path(path)
    with atomic_target(path) as tmp, quiet_legacy_exporter():
        torch.onnx.export(
            exportable,
            (dummy,),
            str(tmp),
            dynamo=False,  # TorchScript exporter: traces the eval graph as is, no torch.export/onnxscript passes
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=output_names,
            dynamic_axes={INPUT_NAME: batch_axis, **{name: batch_axis for name in output_names}},
        )
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        # The spec exported with is the default; a caller-supplied one wins so a mismatch can be tested for.
        _set_metadata(proto, {"preprocess": spec.to_dict(), **metadata})
        onnx.save(proto, str(tmp))
    return path


def optimize_onnx(src: Path, dst: Path) -> Path:
    """Offline ONNX Runtime graph optimization (fusions, constant folding) of `src` into `dst`, metadata kept.

    EXTENDED, not ALL: ALL adds NCHWc layout transforms tuned to this machine's CPU, which makes the saved
    file unportable. The result contains com.microsoft ops, so it is for ONNX Runtime only.
    """
    dst = Path(dst)
    with atomic_target(dst) as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp)
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(tmp))
        # ORT 1.32 copies metadata_props into the optimized file; re-attach anyway, the server depends on it.
        source = onnx.load(str(src), load_external_data=False)
        present = {p.key for p in optimized.metadata_props}
        missing = [p for p in source.metadata_props if p.key not in present]
        if missing:
            for prop in missing:
                optimized.metadata_props.add(key=prop.key, value=prop.value)
            onnx.save(optimized, str(tmp))
    return dst


def weights_sha256(model: nn.Module) -> str:
    """Hex SHA-256 over the state_dict (sorted names, dtypes, shapes, raw bytes): same weights, same hash."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
