"""The neuron section: Trainium compile and numerics settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices

NeuronStack = choices("NeuronStack", "auto", "native", "nxd")


@dataclass
class NeuronConfig(Section):
    """Trainium-only settings: the software stack, the compile step, its cache and numerics (ignored on GPU and CPU)."""

    stack: NeuronStack = NeuronStack.auto
    """Which stack trains on Trainium: native (the torch engine on TorchNeuron's "neuron" device; Trn2/Trn3 only),
    nxd (the legacy neuronx-distributed backend on PyTorch/XLA, end of support since Neuron 2.30) or auto, which
    composition resolves to native on trn2/trn3 and nxd on trn1/trn1n (docs/trainium.md)."""

    precompile: bool = False
    """NxD only: run neuron_parallel_compile with the training topology for precompile_steps steps before training."""
    precompile_steps: int = 10
    """Steps the precompile phase traces (graphs, not training progress: it writes no checkpoint)."""
    compile_cache_url: str | None = None
    """The compile cache: NEURON_COMPILE_CACHE_URL (nxd; a shared file-system path or s3:// prefix) or
    TORCH_NEURONX_NEFF_CACHE_DIR (native; a file-system path); None uses the cluster's persistent storage (EKS
    mount_path, Slurm shared_dir, SageMaker's checkpoint folder for native) or the instance's local default.
    Jobs never delete it."""
    stochastic_rounding: bool = True
    """NxD only: bf16 stochastic rounding (NEURON_RT_STOCHASTIC_ROUNDING_EN) when training.precision is bf16."""
    fused_qkv: bool = False
    """NxD only: use NxD's fused QKV projection instead of separate q, k and v under qkv_proj."""
    cc_flags: list[str] = field(default_factory=list)
    """Extra neuronx-cc flags appended to NEURON_CC_FLAGS (NxD only: the native stack's torch.compile backend
    takes its compiler options from TorchNeuron itself)."""
    monitor: bool = False
    """Run neuron-monitor beside training and record NeuronCore utilisation and device memory with every logged
    step (metrics.jsonl and TensorBoard); needs the Neuron tools in the image."""
    checkpoint_xser: bool = False
    """NxD only: save NxD checkpoints with xser (one file per tensor: less host memory while saving, advised for
    70B-class jobs). llm-launch-convert reads only the plain torch.save layout, so leave it off to convert."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, precompile_steps=self.precompile_steps)
