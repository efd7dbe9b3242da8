"""The chunked output projection + cross-entropy (training.loss_chunk_tokens) equals the plain loss.

Loss and gradients against F.cross_entropy on the full logits, on CPU in fp32; then one engine step of the
tiny Llama in this process (gloo, world 1) with and without chunking.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from llm_launch.train.chunked_loss import chunked_linear_cross_entropy
from llm_launch.train.loss import IGNORE, summed_cross_entropy


def _inputs(tokens=37, hidden=24, vocab=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(tokens, hidden, generator=g, dtype=torch.float64).float().requires_grad_()
    w = (torch.randn(vocab, hidden, generator=g) * 0.3).requires_grad_()
    t = torch.randint(0, vocab, (tokens,), generator=g)
    t[::4] = IGNORE
    t[-1] = IGNORE
    return h, w, t


@pytest.mark.parametrize("chunk", [1, 5, 16, 37, 1000])  # 5 and 16 do not divide the 37 tokens
def test_loss_and_gradients_equal_the_plain_cross_entropy(chunk):
    h, w, t = _inputs()
    plain = F.cross_entropy(h @ w.t(), t, ignore_index=IGNORE, reduction="sum")
    (plain * 0.37).backward()
    want = (plain.detach(), h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    chunked = chunked_linear_cross_entropy(h, w, t, chunk)
    (chunked * 0.37).backward()
    torch.testing.assert_close(chunked.detach(), want[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h.grad, want[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, want[2], rtol=1e-5, atol=1e-5)
    assert w.grad.abs().sum() > 0 and h.grad[::4].abs().sum() == 0  # ignored tokens get no gradient


def test_batched_rows_and_no_grad_give_the_summed_loss():
    h, w, t = _inputs(tokens=48)
    plain = summed_cross_entropy((h @ w.t()).reshape(3, 16, -1), t.reshape(3, 16))
    with torch.no_grad():
        chunked = chunked_linear_cross_entropy(h.reshape(3, 16, -1), w, t.reshape(3, 16), 7)
    torch.testing.assert_close(chunked, plain.detach(), rtol=1e-5, atol=1e-5)
    assert not chunked.requires_grad


@pytest.fixture()
def single_rank_group(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


SMALL = ("model.num_layers=2", "model.hidden_size=64", "model.intermediate_size=128", "model.num_attention_heads=4",
         "model.num_key_value_heads=2")


@pytest.mark.parametrize("layout", ["ddp", "fsdp"])
def test_an_engine_step_gives_the_same_loss_and_gradients_with_and_without_chunks(layout, job_for, single_rank_group):
    from llm_launch.launcher.plan import make_plan
    from llm_launch.train.gpu.engine import Engine
    from llm_launch.train.gpu.mesh import job_mesh

    results = []
    for chunk in (0, 50):  # 2 rows x 64 tokens: 50 does not divide the 128
        job = job_for("trainer.nproc_per_node=1", f"parallelism={layout}", "training.seq_len=64", *SMALL,
                      f"training.loss_chunk_tokens={chunk}")
        plan = make_plan(job)
        engine = Engine(job, job_mesh(job, plan, torch.device("cpu")), pipeline_microbatches=1)
        assert engine.chunked_loss == (chunk > 0)
        g = torch.Generator().manual_seed(3)
        ids = torch.randint(0, job.model.vocab_size, (2, 65), generator=g)
        targets = ids[:, 1:].clone()
        targets[0, :20] = IGNORE
        loss = engine.train_step([(ids[:, :-1], targets)], scale=1.0 / 108)
        grads = {n: p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad.clone()
                 for n, p in engine.checkpoint_module().named_parameters()}
        results.append((loss, grads, engine.eval_loss([(ids[:, :-1], targets)])))
    (plain, plain_grads, plain_eval), (chunked, chunked_grads, chunked_eval) = results
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked_eval, plain_eval, rtol=1e-5, atol=1e-5)
    assert plain_grads.keys() == chunked_grads.keys()
    assert "model.embed_tokens.weight" in plain_grads  # the output projection's gradient (tied or not) is compared
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
