"""How an NxD checkpoint is split (ShardLayout) and the layout a Trainium job trains with.

Shared by the launcher (model.pretrained_path's nxd_layout.json checked at plan time), the converter
(llm_launch.train.convert) and the Neuron backend, which writes nxd_layout.json beside the shards it saves.
KV replication follows NxD 2.29's GQA layer (neuronx_distributed/modules/qkv_linear.py,
https://github.com/aws-neuron/neuronx-distributed): llm_launch.train.convert.layout holds the index math.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_launch.launcher.config.schema import JobConfig

HW_BACKENDS = ("trn1", "trn2")


@dataclass(frozen=True)
class ShardLayout:
    """How one NxD checkpoint is split: degrees, KV replication, hardware order and QKV format."""

    tp: int = 1
    """Tensor-parallel degree."""
    pp: int = 1
    """Pipeline-parallel degree."""
    virtual_pp: int = 1
    """Model chunks per pipeline rank (interleaved pipeline)."""
    kv_replicator: int = 1
    """How many times each KV head is repeated (NxD kv_size_multiplier); 1 = none."""
    hw: str = "trn1"
    """trn1 (interleaved KV replication) or trn2 (blocked)."""
    fused_qkv: bool = False
    """Store qkv_proj.weight_qkv (per-rank q, k, v concatenated) instead of weight_q/_k/_v."""


def default_kv_replicator(num_kv_heads: int, tp: int) -> int:
    """The replication NxD needs: tp / kv_heads when tp exceeds the KV heads, else 1."""
    return tp // num_kv_heads if tp > num_kv_heads and tp % num_kv_heads == 0 else 1


def layout_of_job(job: JobConfig) -> ShardLayout:
    """The NxD checkpoint layout a Trainium job trains with."""
    par = job.parallelism
    replicator = par.kv_replicator or default_kv_replicator(job.model.num_key_value_heads, par.tp)
    hw = "trn2" if job.instance.accelerator == "trainium2" else "trn1"
    return ShardLayout(tp=par.tp, pp=par.pp, virtual_pp=par.virtual_pp, kv_replicator=replicator, hw=hw,
                       fused_qkv=job.neuron.fused_qkv)


def layout_record(job: JobConfig) -> dict[str, Any]:
    """The job's NxD shard layout as nxd_layout.json holds it (tp, pp, virtual_pp, kv_replicator, hw, fused_qkv)."""
    layout = layout_of_job(job)
    return {k: getattr(layout, k) for k in layout.__dataclass_fields__}


def layout_differences(found: dict[str, Any], expected: dict[str, Any]) -> str:
    """'tp=8 (this job: 32), ...' for each field where a checkpoint's recorded layout differs from the job's."""
    return ", ".join(f"{k}={found.get(k)} (this job: {v})" for k, v in expected.items() if found.get(k) != v)
