"""Elastic node count (trainer.min_nodes .. trainer.num_nodes): the layouts a job may run in, their checks, and the
job a rank runs once torchrun has said how many ranks there are.

torchrun's c10d rendezvous with `--nnodes=min:max` starts the workers on any node count in that range and, after a
node is lost, restarts them on the nodes left (https://docs.pytorch.org/docs/stable/elastic/run.html). The trainer
then lays out its ranks from WORLD_SIZE (runtime_job), not from the planned num_nodes: tp and pp stay, data
parallelism shrinks, and gradient accumulation grows so that the global batch, and with it every step's samples
and the data position (train/data/loader.py: step s reads rows [s*G, (s+1)*G)), stays the same. DCP re-shards the
checkpoint onto the new layout when it loads.

The plan therefore checks every node count in the range: the ranks divide by tp x pp and the global batch by
micro_batch_size x dp; memory per rank is largest at min_nodes (the least sharding, the most accumulation), so
that is where it must fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.memory import GIB
from llm_launch.launcher.problems import Findings
from llm_launch.launcher.topology import topology_of


def is_elastic(job: JobConfig) -> bool:
    """Whether the job may run on fewer nodes than num_nodes."""
    low = job.trainer.min_nodes
    return low is not None and low < job.trainer.num_nodes


def node_range(job: JobConfig) -> tuple[int, int]:
    """(fewest, most) nodes: (num_nodes, num_nodes) for a fixed job."""
    high = job.trainer.num_nodes
    return (job.trainer.min_nodes or high) if is_elastic(job) else high, high


def nnodes_flag(job: JobConfig) -> str:
    """torchrun's --nnodes value: N, or MIN:MAX for an elastic job."""
    low, high = node_range(job)
    return f"{low}:{high}" if low != high else str(high)


def at_nodes(job: JobConfig, nodes: int) -> JobConfig:
    """The job as it runs on `nodes` nodes (same tp, pp, global batch; dp from the ranks)."""
    return replace(job, trainer=replace(job.trainer, num_nodes=nodes, min_nodes=None),
                   parallelism=replace(job.parallelism, dp=None))


@dataclass(frozen=True)
class ElasticLayout:
    """What one node count of an elastic job resolves to."""

    nodes: int
    world_size: int
    dp: int
    gradient_accumulation: int
    memory_gib: float
    fits: bool

    def describe(self) -> str:
        return (f"{self.nodes} node(s): {self.world_size} ranks, dp {self.dp}, grad accum {self.gradient_accumulation}, "
                f"{self.memory_gib:.1f} GiB per rank")


def layout_at(job: JobConfig, nodes: int) -> ElasticLayout:
    """The plan of the job on `nodes` nodes, reduced to what changes with the node count."""
    from llm_launch.launcher.plan import make_plan  # the plan reports elastic layouts: imported late

    plan = make_plan(at_nodes(job, nodes))
    return ElasticLayout(nodes, plan.world_size, plan.dp, plan.gradient_accumulation, plan.memory.total / GIB,
                         plan.memory.fits)


def _batch_problem(job: JobConfig, nodes: int) -> str | None:
    """Why the job cannot run on `nodes` nodes with its global batch, or None."""
    topo = topology_of(at_nodes(job, nodes))
    par, train = job.parallelism, job.training
    if topo.world_size % topo.model_parallel:
        return f"{nodes} node(s) give {topo.world_size} ranks, not a multiple of tp x pp = {topo.model_parallel}"
    per_pass = train.micro_batch_size * topo.dp
    if train.global_batch_size % per_pass:
        return (f"on {nodes} node(s) (dp {topo.dp}) global_batch_size {train.global_batch_size} does not divide by "
                f"micro_batch_size {train.micro_batch_size} x dp {topo.dp} = {per_pass}, so the global batch "
                "cannot stay the same")
    if par.pp > 1 and par.pp_microbatches and (train.global_batch_size // topo.dp) % par.pp_microbatches:
        return f"on {nodes} node(s) parallelism.pp_microbatches={par.pp_microbatches} does not divide a replica's samples"
    return None


def check_elastic(job: JobConfig, out: Findings) -> None:
    """Refuse, one line each, an elastic range some node count of which cannot keep the global batch, a min_nodes
    whose memory does not fit, and what the backend cannot re-lay out."""
    if not is_elastic(job):
        return
    low, high = node_range(job)
    key = "trainer.min_nodes"
    from llm_launch.launcher.devices import uses_nxd

    if uses_nxd(job):
        out.error(key, "NxD (Trainium 1) compiles its graphs and lays out its checkpoints for one world size; set "
                  f"trainer.min_nodes={high} (or null)")
        return
    if job.parallelism.dp is not None:
        out.error("parallelism.dp", f"a fixed dp={job.parallelism.dp} cannot follow an elastic node count "
                  f"({low} to {high} nodes); set parallelism.dp=null")
    for nodes in range(low, high + 1):
        problem = _batch_problem(job, nodes)
        if problem:
            keeps = [n for n in range(low + 1, high + 1)
                     if all(_batch_problem(job, m) is None for m in range(n, high + 1))]
            fix = (f"set trainer.min_nodes={keeps[0]}" if keeps else
                   "pick a global_batch_size divisible by micro_batch_size x dp at every node count")
            out.error(key, f"{problem}; {fix}")
            return
    least = layout_at(job, low)
    if not least.fits:
        fitting = next((n for n in range(low + 1, high + 1) if layout_at(job, n).fits), None)
        fix = f"set trainer.min_nodes={fitting}" if fitting else "fit the job at trainer.num_nodes first"
        out.error(key, f"on {low} node(s) a rank needs an estimated {least.memory_gib:.1f} GiB, more than fits on "
                  f"{job.instance.name}; {fix}")


def elastic_summary(job: JobConfig) -> dict | None:
    """The plan's elastic section: the layouts at min_nodes and at num_nodes (None for a fixed job)."""
    if not is_elastic(job):
        return None
    low, high = node_range(job)
    return {"min_nodes": low, "max_nodes": high, "max_restarts": job.trainer.max_restarts,
            "at_min": layout_at(job, low).__dict__, "at_max": layout_at(job, high).__dict__}


class WorldSizeError(ValueError):
    """torchrun started a world size the job cannot run in."""


def runtime_job(job: JobConfig, world_size: int) -> JobConfig:
    """The job laid out for the ranks torchrun started: an elastic job on world_size / ranks_per_node nodes.
    A fixed job is returned unchanged (its mesh checks the world size itself)."""
    if not is_elastic(job):
        return job
    low, high = node_range(job)
    ranks = topology_of(job).ranks_per_node
    nodes, rest = divmod(world_size, ranks)
    if rest or not low <= nodes <= high:
        raise WorldSizeError(f"torchrun started {world_size} ranks; this job runs {ranks} per node on {low} to {high} "
                             f"nodes; start it with --nnodes={low}:{high} --nproc_per_node={ranks}")
    return at_nodes(job, nodes)
