"""Output projection and summed cross-entropy over chunks of tokens, without the full logits.

The plain last stage returns logits [rows, seq, vocab] and the loss upcasts them to fp32: with a
128K vocabulary that is the largest tensor of a step (and its gradient another). Here the
projection and the loss run over chunk_tokens tokens at a time: each chunk's logits are computed
in the compute dtype, upcast to fp32, turned into the summed loss and, when gradients are wanted,
at once into the gradients for the hidden states and the weight (softmax minus one-hot over the
targets that are not IGNORE), so only one chunk's logits exist at any time. backward then scales
the stored gradients by the incoming gradient. This is the approach of Liger-Kernel's fused linear
cross-entropy (https://github.com/linkedin/Liger-Kernel/blob/main/src/liger_kernel/ops/fused_linear_cross_entropy.py),
written here in plain torch.
"""

from __future__ import annotations

import torch
from llm_launch.train.loss import IGNORE


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """sum over tokens of cross_entropy(hidden @ weight.T, targets), IGNORE skipped; gradients made in forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int,
                with_grad: bool) -> torch.Tensor:
        tokens = hidden.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if with_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if with_grad else None
        for start in range(0, tokens, chunk_tokens):
            h = hidden[start:start + chunk_tokens]
            t = targets[start:start + chunk_tokens]
            logits = (h @ weight.t()).float()
            keep = t != IGNORE
            safe = torch.where(keep, t, torch.zeros_like(t))
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
            total += ((lse - picked) * keep).sum()
            if with_grad:
                grad = torch.exp(logits - lse.unsqueeze(1))  # softmax, in place of the logits
                del logits
                grad[torch.arange(len(t), device=t.device), safe] -= 1.0
                grad *= keep.unsqueeze(1)
                grad = grad.to(hidden.dtype)
                grad_hidden[start:start + chunk_tokens] = grad @ weight
                grad_weight += (grad.t() @ h).float()
        if with_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_output.to(grad_hidden.dtype)
        return grad_hidden * scale, grad_weight * grad_output.to(grad_weight.dtype), None, None, None


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 chunk_tokens: int) -> torch.Tensor:
    """Summed next-token loss (fp32) of hidden [..., H] projected by weight [V, H] against targets [...].

    Under autocast the projection runs in the autocast dtype, as the plain nn.Linear would; the casts sit
    outside the Function, so autograd carries the gradients back to the fp32 weight.
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    hidden = hidden.reshape(-1, hidden.shape[-1]).to(dtype)
    weight = weight.to(dtype)
    with_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(device, enabled=False):
        return ChunkedLinearCrossEntropy.apply(hidden, weight, targets.reshape(-1), chunk_tokens, with_grad)
