"""The neuron section: Trainium compile and numerics settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.launcher.config.checks import Checks, Section


@dataclass
class NeuronConfig(Section):
    """Trainium-only settings: the compile step, its cache and numerics (ignored on GPU and CPU)."""

    precompile: bool = False
    """Run neuron_parallel_compile with the training topology for precompile_steps steps before training."""
    precompile_steps: int = 10
    """Steps the precompile phase traces (graphs, not training progress: it writes no checkpoint)."""
    compile_cache_url: str | None = None
    """NEURON_COMPILE_CACHE_URL: a shared file-system path or s3:// prefix; None uses the cluster's
    shared storage (EKS mount_path, Slurm shared_dir) or the instance's local default. Jobs never delete it."""
    stochastic_rounding: bool = True
    """bf16 stochastic rounding (NEURON_RT_STOCHASTIC_ROUNDING_EN) when training.precision is bf16."""
    fused_qkv: bool = False
    """Use NxD's fused QKV projection instead of separate q, k and v under qkv_proj."""
    cc_flags: list[str] = field(default_factory=list)
    """Extra neuronx-cc flags appended to NEURON_CC_FLAGS."""
    monitor: bool = False
    """Run neuron-monitor beside training and record NeuronCore utilisation and device memory with every logged
    step (metrics.jsonl and TensorBoard); needs the Neuron tools in the image."""
    checkpoint_xser: bool = False
    """Save NxD checkpoints with xser (one file per tensor: less host memory while saving, advised for
    70B-class jobs). llm-launch-convert reads only the plain torch.save layout, so leave it off to convert."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, precompile_steps=self.precompile_steps)
