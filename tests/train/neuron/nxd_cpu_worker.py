"""Run under torchrun with NXD_SRC set: our NxD model on NxD's own parallel layers (CPU mode, gloo),
loaded from llm-launch-convert shards, against the HF model.

Usage: torchrun --nproc_per_node N nxd_cpu_worker.py forward <hf_dir> <nxd_dir> <tp> <kv_replicator> <out.json>
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.environ.get("NXD_CPU_TOOLS", "/work/shared/tools/nxd-cpu"))
import nxd_cpu  # noqa: E402,F401  (stubs torch_xla; must come before any neuronx_distributed import)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def forward(hf_dir: str, nxd_dir: str, tp: int, kv_replicator: int, out: str) -> None:
    from llm_launch.train.convert.layout import nxd_shard_name
    from llm_launch.train.convert.spec import model_group
    from llm_launch.train.neuron.llama import build_model
    from neuronx_distributed.parallel_layers import parallel_state
    from transformers import AutoModelForCausalLM

    dist.init_process_group("gloo")
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp)
    rank = parallel_state.get_tensor_model_parallel_rank()
    spec = model_group("tiny_llama")
    spec.num_layers, spec.num_attention_heads, spec.num_key_value_heads = 4, 8, 2
    spec.vocab_size, spec.hidden_size, spec.intermediate_size = 256, 64, 128
    model = build_model(spec, kv_replicator=kv_replicator, fused_qkv=False, sequence_parallel=False,
                        dtype=torch.float32).eval()
    state = torch.load(os.path.join(nxd_dir, "model", nxd_shard_name(rank, 0)), weights_only=True)
    model.load_state_dict(state, strict=True)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    masked = ids.clone()
    masked[:, :6] = -100  # an SFT prompt: no loss on its tokens
    with torch.no_grad():  # the model returns summed losses (train/neuron/llama.py); HF returns means
        loss, logits = model(ids, ids)
        loss = loss / (ids[:, 1:] != -100).sum()
        masked_loss, _ = model(ids, masked)
        masked_loss = masked_loss / (masked[:, 1:] != -100).sum()
    parts = [torch.empty_like(logits) for _ in range(tp)]
    dist.all_gather(parts, logits.contiguous())
    if dist.get_rank() == 0:
        hf = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
        with torch.no_grad():
            expected = hf(input_ids=ids, labels=ids)
            expected_masked = hf(input_ids=ids, labels=masked)
        full = torch.cat(parts, dim=-1)
        result = {"max_abs_diff": float((full - expected.logits).abs().max()),
                  "loss": float(loss), "hf_loss": float(expected.loss),
                  "masked_loss": float(masked_loss), "hf_masked_loss": float(expected_masked.loss)}
        with open(out, "w") as handle:
            json.dump(result, handle)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    forward(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
