"""The model as the engine runs it: a stage of a transformers causal LM with the same parameter names.

A CausalLMStage holds some of the model's parts: the token embedding (first stage), a run
of decoder layers, the final norm and output projection (last stage), and the rotary
embedding (every stage; it has no weights). Without pipeline parallelism one stage holds
everything. Parameter names are the Hugging Face ones (model.layers.7.mlp.up_proj.weight),
because the layers sit in a ModuleDict keyed by their index in the full model, so
checkpoints move between layouts and to Hugging Face unchanged.

The stage calls the layers itself with explicit positions and no mask: attention then runs
causal through scaled_dot_product_attention, and the layers see the full sequence's
rotary tables even when sequence parallelism shards their inputs.
"""

from __future__ import annotations

import torch
from llm_launch.train.chunked_loss import chunked_linear_cross_entropy
from torch import nn


class _Body(nn.Module):
    """Holds the model.* parts, so that names read model.embed_tokens, model.layers.N, model.norm."""

    def __init__(self, embed_tokens: nn.Module | None, layers: dict[int, nn.Module], norm: nn.Module | None,
                 rotary_emb: nn.Module):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.layers = nn.ModuleDict({str(i): layer for i, layer in layers.items()})
        self.norm = norm
        self.rotary_emb = rotary_emb


class CausalLMStage(nn.Module):
    """Token ids (first stage) or hidden states in; hidden states or logits (last stage) out."""

    def __init__(self, hf_model: nn.Module, layer_ids: list[int], *, first: bool, last: bool):
        super().__init__()
        body = hf_model.model
        self.model = _Body(body.embed_tokens if first else None, {i: body.layers[i] for i in layer_ids},
                           body.norm if last else None, body.rotary_emb)
        self.lm_head = hf_model.lm_head if last else None
        self.layer_ids = list(layer_ids)
        self.sequence_shards = 1
        """Ranks the sequence is split over between layers (tp under sequence parallelism)."""
        self.document_eos: int | None = None
        """With document masking: the EOS id that ends each packed document (a single-stage model only)."""
        self.loss_chunk_tokens = 0
        """training.loss_chunk_tokens: > 0 makes a last stage given targets return the summed loss, computed over
        chunks of this many tokens without the full logits (train/chunked_loss.py)."""

    @property
    def is_first(self) -> bool:
        return self.model.embed_tokens is not None

    @property
    def is_last(self) -> bool:
        return self.lm_head is not None

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states, or logits (last stage); with targets and loss_chunk_tokens, the summed loss (last stage)."""
        hidden = self.model.embed_tokens(inputs) if self.is_first else inputs
        seq_len = inputs.shape[1] if self.is_first else inputs.shape[1] * self.sequence_shards
        mask = None
        if self.document_eos is not None:
            positions, mask = document_positions_and_mask(inputs, self.document_eos)
        else:
            positions = torch.arange(seq_len, device=inputs.device).unsqueeze(0)
        rotary = self.model.rotary_emb(hidden, positions)
        for layer in self.model.layers.values():
            hidden = layer(hidden, attention_mask=mask, position_ids=positions, position_embeddings=rotary)
        if self.is_last and targets is not None and self.loss_chunk_tokens > 0:
            return chunked_linear_cross_entropy(self.model.norm(hidden), self.lm_head.weight, targets,
                                                self.loss_chunk_tokens)
        if self.is_last:
            return self.lm_head(self.model.norm(hidden))
        return hidden


def retie_embeddings(stage: CausalLMStage) -> None:
    """Point the output projection at the input embedding again, in a stage that holds both of a model that ties
    them: materialising a meta-built module (to_empty) and distributing it for tensor parallelism each give every
    module a new parameter of its own, and an untied copy would train apart from the embedding (and, after
    to_empty, hold no values: a pretrained checkpoint stores the tied weight once)."""
    if stage.is_first and stage.is_last and stage.lm_head.weight is not stage.model.embed_tokens.weight:
        stage.lm_head.weight = stage.model.embed_tokens.weight


def document_positions_and_mask(inputs: torch.Tensor, eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions restarting at each packed document, and a causal mask that stays inside documents.

    A document ends with its EOS; the next token starts the next document. Returns positions
    [rows, seq] and a boolean mask [rows, 1, seq, seq] (True: may attend).
    """
    rows, seq = inputs.shape
    is_eos = inputs == eos_id
    document = torch.cumsum(is_eos, dim=1) - is_eos.long()  # the EOS belongs to the document it ends
    index = torch.arange(seq, device=inputs.device).expand(rows, seq)
    starts = torch.zeros_like(is_eos)
    starts[:, 0] = True
    starts[:, 1:] = is_eos[:, :-1]
    first_of_document = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    causal = torch.ones(seq, seq, dtype=torch.bool, device=inputs.device).tril()
    same_document = document.unsqueeze(2) == document.unsqueeze(1)
    return index - first_of_document, (same_document & causal).unsqueeze(1)


def stage_layer_ids(num_layers: int, num_stages: int, stage: int) -> list[int]:
    """The contiguous run of decoder layers of one stage (stages split the layers evenly)."""
    per_stage = num_layers // num_stages
    return list(range(stage * per_stage, (stage + 1) * per_stage))


def build_stages(hf_model: nn.Module, *, pp_rank: int, pp_size: int, virtual_pp: int) -> list[CausalLMStage]:
    """The stages this pipeline rank runs: one, or virtual_pp of them for interleaved schedules.

    Stage s of pp_size x virtual_pp runs on pipeline rank s % pp_size (the looped layout the
    interleaved schedules expect).
    """
    num_stages = pp_size * virtual_pp
    num_layers = len(hf_model.model.layers)
    stages = []
    for stage in range(pp_rank, num_stages, pp_size):
        stages.append(CausalLMStage(hf_model, stage_layer_ids(num_layers, num_stages, stage),
                                    first=stage == 0, last=stage == num_stages - 1))
    return stages


def stage_indices(*, pp_rank: int, pp_size: int, virtual_pp: int) -> list[int]:
    """Global stage index of each stage build_stages returns for this rank."""
    return list(range(pp_rank, pp_size * virtual_pp, pp_size))


class RankModel(nn.Module):
    """All the stages one rank runs, seen as one module with Hugging Face names (for checkpoints)."""

    def __init__(self, stages: list[CausalLMStage]):
        super().__init__()
        first = next((s for s in stages if s.is_first), None)
        last = next((s for s in stages if s.is_last), None)
        layers = {int(key): layer for s in stages for key, layer in s.model.layers.items()}
        self.model = _Body(first.model.embed_tokens if first else None, layers,
                           last.model.norm if last else None, stages[0].model.rotary_emb)
        self.lm_head = last.lm_head if last else None


def rank_model(stages: list[CausalLMStage]) -> nn.Module:
    """The module whose state dict is this rank's part of the model (the stage itself when it is one)."""
    return stages[0] if len(stages) == 1 else RankModel(stages)
