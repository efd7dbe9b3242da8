"""The plan section: how the plan is worked out, and what action=suggest searches."""

from __future__ import annotations

from dataclasses import dataclass

from llm_launch.launcher.config.checks import Checks, Section
from llm_launch.launcher.config.choices import choices

MemoryMode = choices("MemoryMode", "estimate", "traced")


PriceSource = choices("PriceSource", "catalog", "aws")


SuggestRanking = choices("SuggestRanking", "step_time", "cost")


@dataclass
class PlanConfig(Section):
    """How the plan is worked out, and what action=suggest searches."""

    memory: MemoryMode = MemoryMode.estimate
    """estimate (the analytical rules of launcher/memory.py, torch-free, instant) or traced (build the job's
    real model and layout on fake tensors and measure one step's peak per rank with torch's memory tracker;
    GPU layouts with pp=1, minutes for 70B-class models)."""
    prices: PriceSource = PriceSource.catalog
    """catalog (the instance entry's dated price) or aws (the AWS Price List API through boto3, which needs
    AWS credentials; the catalog price is used when the API gives none)."""
    top: int = 10
    """Rows action=suggest prints."""
    min_nodes: int | None = None
    """Fewest nodes action=suggest tries; None means trainer.num_nodes."""
    max_nodes: int | None = None
    """Most nodes action=suggest tries; None means trainer.num_nodes."""
    rank_by: SuggestRanking = SuggestRanking.step_time
    """Order of the suggestions: step_time (fastest first) or cost (cheapest per billion tokens first)."""

    def own_problems(self, checks: Checks) -> None:
        checks.at_least(1, top=self.top, min_nodes=self.min_nodes, max_nodes=self.max_nodes)
        if self.min_nodes is not None and self.max_nodes is not None and self.min_nodes > self.max_nodes:
            checks.error("min_nodes", f"{self.min_nodes} is above plan.max_nodes={self.max_nodes}; swap them")
