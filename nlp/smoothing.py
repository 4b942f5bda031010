"""Per-channel smoothing of the int8 path's activations (SmoothQuant), fitted at ship time.

Dynamic int8 quantises each MatMul's input with one scale per batch tensor, so a few input
channels with large values (BERT has them) leave the others only a few integer steps. Dividing
input channel ``j`` by ``s_j`` and multiplying row ``j`` of the weight by ``s_j`` computes the
same product in exact arithmetic, but moves the range from the activations into the weights,
which are quantised per output channel (Xiao et al., "SmoothQuant", 2023). The scales come
from the fp32 model's activations on training texts and are stored beside the weights, so the
int8 build needs no data at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SMOOTHING_FILE = "int8_smoothing.safetensors"
#: How much of each input channel's range moves into the weights (chosen by measurement,
#: models/README.md "The CPU path").
DEFAULT_ALPHA = 0.8
#: Layers ``ship`` keeps in fp32 on the int8 path: the first layer's FFN, whose int8 error
#: moved the most labels; two fp32 layers, as before smoothing, so the speed is unchanged.
SHIP_FP32_LAYERS = ("bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.0.output.dense")
#: Scales are kept within this factor of 1 so no channel is squeezed to nothing.
SCALE_LIMIT = 100.0


def input_ranges(model: Any, batches: Iterable[Sequence[Sequence[int]]]) -> dict[str, Any]:
    """The largest absolute input value of every encoder Linear, per input channel.

    ``batches`` are lists of token ids; each is padded as the scorer pads it, and padding
    positions count, as they do in the run-time activation ranges.
    """
    import torch

    ranges: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".encoder." in f".{name}":

            def hook(_m: Any, inputs: tuple, _out: Any, name: str = name) -> None:
                x = inputs[0].detach()
                peak = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
                ranges[name] = torch.maximum(ranges[name], peak) if name in ranges else peak

            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for batch in batches:
                longest = max(len(ids) for ids in batch)
                ids = torch.tensor([list(ids) + [0] * (longest - len(ids)) for ids in batch])
                model(input_ids=ids, attention_mask=(ids != 0).long())
    finally:
        for h in hooks:
            h.remove()
    return ranges


def fit_scales(model: Any, ranges: dict[str, Any], alpha: float) -> dict[str, Any]:
    """``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` for each Linear named in ``ranges``
    (clamped to 1/:data:`SCALE_LIMIT` .. :data:`SCALE_LIMIT`). ``alpha`` 0 leaves the
    activations alone; 1 moves their whole range into the weights."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, not {alpha}")
    scales = {}
    for name, peak in sorted(ranges.items()):
        weight = model.get_submodule(name).weight.detach().float().abs().amax(dim=0)
        s = peak.float().clamp(min=1e-5) ** alpha / weight.clamp(min=1e-5) ** (1 - alpha)
        scales[name] = s.clamp(min=1 / SCALE_LIMIT, max=SCALE_LIMIT).contiguous()
    return scales


def save_scales(path: Path, scales: dict[str, Any], alpha: float) -> None:
    """Write the scales as safetensors (fp32), with ``alpha`` in its metadata."""
    from safetensors.torch import save_file

    save_file(dict(scales), str(path), metadata={"alpha": str(alpha)})


def load_scales(path: Path) -> dict[str, Any]:
    """The scales written by :func:`save_scales`."""
    from safetensors.torch import load_file

    return load_file(str(path))


def apply_scales(model: Any, scales: dict[str, Any]) -> None:
    """Replace each named Linear by one that divides its input by ``s`` and holds ``W·diag(s)``.

    The model computes the same function (up to float rounding); exported to ONNX, each
    smoothed MatMul gets a ``Mul`` by ``1/s`` in front of it, which int8 then quantises.

    Raises:
        ValueError: a scale names no Linear of this model, or has the wrong size.
    """
    import torch

    class SmoothedLinear(torch.nn.Module):
        inv_s: torch.Tensor

        def __init__(self, linear: torch.nn.Linear, s: torch.Tensor) -> None:
            super().__init__()
            self.register_buffer("inv_s", (1.0 / s).to(linear.weight.dtype))
            self.weight = torch.nn.Parameter(linear.weight.data * s.to(linear.weight.dtype))
            self.bias = linear.bias

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.linear(x * self.inv_s, self.weight, self.bias)

    for name, s in scales.items():
        parent_name, _, attr = name.rpartition(".")
        try:
            linear = model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"smoothing scale {name!r} names no layer of this model") from exc
        if not isinstance(linear, torch.nn.Linear) or linear.in_features != s.numel():
            raise ValueError(f"smoothing scale {name!r} does not fit the layer it names")
        setattr(model.get_submodule(parent_name), attr, SmoothedLinear(linear, s))
