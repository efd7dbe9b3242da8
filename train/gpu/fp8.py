"""training.precision=fp8: the decoder layers' linear layers in float8 (torchao), on H100/H200.

torchao's float8 training swaps each nn.Linear for a Float8Linear whose matmuls run on FP8 tensor cores
(torch._scaled_mm) with rowwise scaling, the recipe torchtitan documents for accuracy
(https://github.com/pytorch/torchtitan/blob/main/docs/float8.md, https://github.com/pytorch/ao/tree/main/torchao/float8).
FSDP2 still all-gathers bf16 weights: torchao's float8 all-gather works with tensorwise scaling only. The output
projection stays bf16 (as torchtitan leaves it), and so do layers whose sizes the FP8 kernels cannot take (not
multiples of 16). torchao is imported here only, for fp8 jobs: it is the optional extra `fp8`, not a required
dependency. This path has not run here (no FP8 GPU was lent; issue 28).
"""

from __future__ import annotations

from llm_launch.train.errors import JobError
from torch import nn


def _fp8_capable(module: nn.Module, fqn: str) -> bool:
    """Linear layers of the decoder blocks whose both dimensions are multiples of 16 (the FP8 GEMM's constraint)."""
    return (isinstance(module, nn.Linear) and fqn.startswith("model.layers.")
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def convert_to_float8(stage: nn.Module) -> None:
    """Swap the stage's decoder-layer linear layers for torchao Float8Linear (rowwise scaling), in place, before
    tensor parallelism, compile and FSDP2 apply."""
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as error:
        raise JobError("training.precision=fp8 needs torchao (pip install 'llm-launch[fp8]'); "
                       f"it could not be imported ({error}); install it or use bf16") from None
    config = Float8LinearConfig.from_recipe_name("rowwise")
    convert_to_float8_training(stage, config=config, module_filter_fn=_fp8_capable)
