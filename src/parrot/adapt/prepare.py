"""The inference-preparation step: fuse, swap in parrot's kernels, quantize.

The model stays what training built; `prepare_for_inference` changes it from outside by
swapping modules (`parrot.adapt.swap.replace_modules`) in a fixed order: projections are
fused (`adapt.fusion`), decode attention and RMSNorm get their C kernels where those can
be built (`adapt.native`), then Linear layers are quantized (`adapt.quantize`). The
prepared model computes the same numbers (quantization aside) and keeps its
state-dict keys when not quantized.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from parrot import kernels as native_kernels
from parrot.adapt.fusion import FusedAttention, fuse_projections
from parrot.adapt.native import native_attention, native_norms
from parrot.adapt.quantize import quantize as quantize_linears
from parrot.errors import ParrotError
from parrot.kernels import Kernels
from parrot.utils.home import home_from

QUANTIZE_MODES = ("auto", "none", "int8", "int4")

# Checkpoint formats whose weights 4-bit groups of 32 hold exactly: Q4_1 blocks span their
# minimum (code 0) to their maximum (code 15), so requantizing recovers the same grid.
EXACT_INT4_SOURCES = ("Q4_1",)


def auto_mode(source: str | None, kernels: Kernels | None) -> str:
    """What "auto" means on a CPU for a checkpoint stored as `source` (a GGUF quantization
    such as "Q4_1" or "Q4_K_M"; None: float weights): 4-bit layers when they reproduce the
    file's own weights and parrot's kernels run (the fastest decode in
    benchmarks/bench_pretrained.py), else int8, whose float32 activations stay closest to
    the float model (requantizing Gemma's Q4_K_M to 4 bits visibly changes its answers)."""
    return "int4" if source in EXACT_INT4_SOURCES and kernels is not None else "int8"


def prepare_for_inference(model: nn.Module, quantize: str = "auto", source: str | None = None,
                          native: bool = True, home: Path | None = None,
                          compiler: str | None = None) -> nn.Module:
    """Prepare a model for generation, in place; returns it, for inference only.

    quantize: "none", "int8" (layers and head), "int4" (layers int4, head int8) or "auto"
    (`auto_mode(source, kernels)` on a CPU, none elsewhere: the weight-only kernels are
    CPU ones); `source` is the checkpoint's own quantization, if any
    (`ModelInfo.quantization`). native: use parrot's C kernels on a CPU, built with
    `compiler` under `home` (default ~/.cache/parrot; see `parrot.kernels.load`, and
    `parrot.kernels.settings_from(os.environ)` for what the environment asks).
    """
    if quantize not in QUANTIZE_MODES:
        raise ParrotError(f"Unknown quantization {quantize!r}; use one of "
                          f"{', '.join(QUANTIZE_MODES)}.")
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    kernels = None
    if native and on_cpu:
        kernels = native_kernels.load(Path(home or home_from({})), compiler=compiler)
    if quantize == "auto":
        quantize = auto_mode(source, kernels) if on_cpu else "none"
    if quantize != "none" and not on_cpu:
        raise ParrotError(f"--quantize {quantize} runs on the CPU only; drop it or use "
                          "--device cpu.")
    fuse_projections(model, FusedAttention if kernels is None else native_attention(kernels))
    if kernels is not None:
        native_norms(model, kernels)
    if quantize != "none":
        quantize_linears(model, 8 if quantize == "int8" else 4, kernels=kernels)
    return model
