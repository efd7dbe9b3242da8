"""The data-parallel wrapper: DDP's gradient buckets are final before the first training step, so the first step of
a resumed run reduces in the same buckets as the same step of an uninterrupted one (bit-exact resume above two
ranks; tests/train/test_resume.py runs that at world 4)."""

import pytest
import torch
import torch.distributed as dist
from llm_launch.launcher.config.schema import ModelConfig
from llm_launch.train.gpu.parallelize import ddp_buffer_options, settle_ddp_buckets
from llm_launch.train.gpu.stage import CausalLMStage
from llm_launch.train.model import build_model
from torch.nn.parallel import DistributedDataParallel

TINY = ModelConfig(name="t", vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128)


@pytest.fixture()
def single_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _ddp() -> DistributedDataParallel:
    stage = CausalLMStage(build_model(TINY, seed=0), [0, 1], first=True, last=True)
    return DistributedDataParallel(stage, gradient_as_bucket_view=True, **ddp_buffer_options())


def test_ddp_buckets_are_rebuilt_before_the_first_training_step(single_rank_group):
    ids = torch.randint(2, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    untouched = _ddp()
    untouched(ids)
    assert not untouched._has_rebuilt_buckets  # torch rebuilds only after a first backward: the first step differs

    ddp = _ddp()
    settle_ddp_buckets(ddp, torch.device("cpu"))
    assert all(p.grad is None for p in ddp.parameters())  # the settling backward leaves no gradient behind
    reference = {name: p.detach().clone() for name, p in ddp.named_parameters()}
    ddp(ids).sum().backward()  # the first training step runs in the buckets every later step uses
    assert ddp._has_rebuilt_buckets
    assert all(torch.equal(p, reference[name]) for name, p in ddp.named_parameters())


def test_ddp_is_built_without_a_deprecation_warning(single_rank_group):
    """torch 2.13's FutureWarning for broadcast_buffers was printed once per rank of every DDP job (issue 23)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ddp = _ddp()
    assert ddp.forward_sync_buffers is False
