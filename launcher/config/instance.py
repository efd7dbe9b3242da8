"""The instance section: one entry of the instance catalog."""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices
from omegaconf import MISSING

AcceleratorKind = choices("AcceleratorKind", "cpu", "nvidia", "trainium1", "trainium2", "trainium3")
LNC_ACCELERATORS = ("trainium2", "trainium3")
"""Trainium generations with a logical-core setting (LNC 1 or 2, default 2)."""


@dataclass
class InstanceConfig(Section):
    """One entry of the instance catalog: what a node has, with a source for each figure."""

    name: str = MISSING
    """Catalog key, e.g. ml.p5.48xlarge, or local_cpu for this machine."""
    sagemaker_type: str | None = None
    """SageMaker InstanceType, e.g. ml.trn1.32xlarge; None where SageMaker has no such type."""
    eks_label: str | None = None
    """Value of node.kubernetes.io/instance-type on EKS nodes."""
    accelerator: AcceleratorKind = MISSING
    """Accelerator kind: cpu, nvidia, trainium1, trainium2 or trainium3."""
    accelerator_name: str = ""
    """Human name of the accelerator, e.g. H100 SXM or Trainium2."""
    accelerators_per_node: int = MISSING
    """GPUs or Trainium chips per node (for cpu: worker processes per node)."""
    cores_per_accelerator: int = 1
    """Physical NeuronCores per Trainium chip (1 for GPUs and CPUs)."""
    logical_core_config: int | None = None
    """trn2/trn3 only: physical cores grouped into one logical core (LNC, 1 or 2; default 2)."""
    device_memory_gib: float = MISSING
    """Memory per accelerator in GiB (for cpu: host memory usable per process)."""
    bf16_tflops_per_accelerator: float | None = None
    """Dense bf16 peak per accelerator in TFLOP/s, the MFU denominator; None if unknown."""
    fp8_tflops_per_accelerator: float | None = None
    """Dense FP8 Tensor Core peak per accelerator in TFLOP/s (no sparsity); None where the GPU has no FP8 tensor cores
    (A100, A10G) or no figure: training.precision=fp8 is refused there."""
    bf16_tflops_per_core: float | None = None
    """Trainium: dense bf16 peak of one physical NeuronCore's tensor engine in TFLOP/s. On the native (TorchNeuron)
    stack the MFU denominator per rank is this x LNC, the figure torchtitan uses for Trainium (so MFU compares
    with the vendor's reference trainer); None elsewhere."""
    efa_interfaces: int = 0
    """EFA network interfaces per node; 0 means the type cannot run multi-node jobs."""
    network_gbps: float | None = None
    """Node network bandwidth in Gbit/s."""
    peer_gbytes_per_s: float | None = None
    """Bandwidth from one accelerator to the others of its node, one direction, in GB/s (NVLink or PCIe);
    None where no figure was found, and the step-time model then leaves tensor-parallel traffic out."""
    host_memory_gib: float | None = None
    """Host memory per node in GiB, where the source gives it."""
    k8s_accelerator_resource: str | None = None
    """Kubernetes extended resource requested per node: nvidia.com/gpu or aws.amazon.com/neuron."""
    efa_device_rdma: bool = False
    """Whether EFA does device RDMA on this type (FI_EFA_USE_DEVICE_RDMA=1: p4d/p4de and Trainium)."""
    price_per_hour_usd: float | None = None
    """On-demand price per node-hour in USD (us-east-1 unless the source says otherwise)."""
    price_date: str = ""
    """Date the price was read."""
    price_source: str = ""
    """Where the price was read."""
    sources: dict[str, str] = field(default_factory=dict)
    """Source of each hardware figure, keyed by field name."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, accelerators_per_node=self.accelerators_per_node,
                        cores_per_accelerator=self.cores_per_accelerator)
        checks.at_least(0, efa_interfaces=self.efa_interfaces)
        checks.positive(device_memory_gib=self.device_memory_gib,
                        bf16_tflops_per_accelerator=self.bf16_tflops_per_accelerator,
                        fp8_tflops_per_accelerator=self.fp8_tflops_per_accelerator)
        checks.positive(bf16_tflops_per_core=self.bf16_tflops_per_core)
        if self.accelerator in LNC_ACCELERATORS:
            if self.logical_core_config not in (None, 1, 2):
                checks.error("logical_core_config", f"LNC must be 1 or 2 on trn2/trn3, got {self.logical_core_config}")
        elif self.logical_core_config not in (None, 1):
            checks.error("logical_core_config", "only trn2 and trn3 have a logical core setting; leave it null")
