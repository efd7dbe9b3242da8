"""How the nodes of an EKS job meet: torchrun flags written out, whatever the operator version injects.

torchrun reads its options from PET_* variables only where no flag is given
(https://github.com/pytorch/pytorch/blob/main/torch/distributed/run.py, `env` defaults of each option), and
what the operators inject differs between versions:
* Kubeflow training operator v1 (PyTorchJob), Master + Worker: every release injects MASTER_ADDR=<job>-master-0,
  MASTER_PORT (the Master's pytorchjob-port) and RANK (the node index; Workers start at 1)
  (pkg/controller.v1/pytorch/master.go and envvar.go at v1.6.0:
  https://github.com/kubeflow/training-operator/blob/v1.6.0/pkg/controller.v1/pytorch/envvar.go).
  PET_MASTER_ADDR, PET_MASTER_PORT and PET_NODE_RANK only came with v1.7.0 (kubeflow/training-operator
  PR #1840), so on older operators a torchrun without flags waits on its own 127.0.0.1. The flags below read the
  variables every version injects.
* Elastic PyTorchJob: the endpoint is written from the job itself (<job>-worker-0, or the etcd Service) with the
  same port the rendered elasticPolicy.rdzvPort names (elastic.go, generateEnvRDZVEndpoint).
  torch's c10d rendezvous shares its TCPStore with the trainers by default, and a pod restarted into a job whose
  other agents survived then waits for a MASTER_ADDR the surviving rank 0 never writes again (it built its store
  info in the first round only: torch/distributed/elastic/rendezvous/dynamic_rendezvous.py, next_rendezvous;
  https://github.com/pytorch/pytorch/issues/135712). Elastic pods therefore get
  TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (torch's own opt-out): every round publishes a fresh master address.
  Without it, each lost pod stalled the job for the 60 s store read timeout and then restarted every pod.
* Kubeflow Trainer v2 TrainJob, torch plugin: PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK (the Job completion
  index), PET_MASTER_ADDR=<job>-node-0-0.<job> and PET_MASTER_PORT=29500
  (https://github.com/kubeflow/trainer/blob/v2.3.0/pkg/runtime/framework/plugins/torch/torch.go).
* HyperPodPyTorchJob: the HyperPod elastic agent (`hyperpodrun`, torchrun's options plus its own) meets through
  the operator with --rdzv-backend hyperpod and serves the operator on --server-port 8080
  (https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-eks-operator-install.html#sagemaker-eks-operator-elastic-agent).
  The operator's /start call hands each agent its rank, nnodes, master_addr and master_port; the agent's hyperpod
  rendezvous also reads NNODES from the environment when it is created (hyperpod-elastic-agent 1.1.3,
  rendezvous/hyperpod_rendezvous_backend.py: int(os.environ["NNODES"]); the agent's own example job,
  k8s/mnist_lightning_cd_template.yaml, sets it in the container), so the pods set it.
"""

from __future__ import annotations

from llm_launch.launcher.clusters.eks.paths import eks_name
from llm_launch.launcher.config.schema import JobConfig
from llm_launch.launcher.elastic import is_elastic
from llm_launch.launcher.environment import ELASTIC_ENVIRONMENT
from llm_launch.launcher.render.command import NODE_RUN, ShellExpr, rendezvous_port
from llm_launch.launcher.topology import topology_of

ETCD_PORT = 2379
HYPERPOD_LAUNCHER = "hyperpodrun"
HYPERPOD_AGENT_PORT = 8080
"""Port the HyperPod elastic agent serves the operator on (its --server-port default)."""


def etcd_name(job: JobConfig) -> str:
    return f"{eks_name(job)}-etcd"


def worker0(job: JobConfig) -> str:
    """The first Worker's pod (and headless Service) name, the c10d store's host."""
    return f"{eks_name(job)}-worker-0"


def _from_env(flag: str, variable: str) -> ShellExpr:
    return ShellExpr(f'{flag}="${{{variable}}}"')


def elastic_job(job: JobConfig) -> bool:
    """Whether a PyTorchJob is rendered elastic: asked for (cluster.eks.elastic) or needed (trainer.min_nodes)."""
    return job.cluster.eks.elastic or is_elastic(job)


def rendezvous_flags(job: JobConfig) -> list[str]:
    """The torchrun rendezvous flags of the job's kind and topology."""
    eks = job.cluster.eks
    if eks.job_kind == "trainjob":
        return [_from_env("--node_rank", "PET_NODE_RANK"), _from_env("--master_addr", "PET_MASTER_ADDR"),
                _from_env("--master_port", "PET_MASTER_PORT")]
    if eks.job_kind == "hyperpod":
        return ["--rdzv-backend=hyperpod", "--server-host=0.0.0.0", f"--server-port={HYPERPOD_AGENT_PORT}"]
    if not elastic_job(job):
        return [_from_env("--node_rank", "RANK"), _from_env("--master_addr", "MASTER_ADDR"),
                _from_env("--master_port", "MASTER_PORT")]
    if eks.rdzv_backend == "etcd":
        endpoint = f"{etcd_name(job)}:{ETCD_PORT}"
    else:
        endpoint = f"{worker0(job)}:{rendezvous_port(job)}"
    return [f"--rdzv_backend={eks.rdzv_backend}", f"--rdzv_endpoint={endpoint}", f"--rdzv_id={eks_name(job)}"]


def rendezvous_env(job: JobConfig) -> dict[str, str]:
    """Environment the rendezvous needs in every pod (see the module docstring)."""
    eks = job.cluster.eks
    if eks.job_kind == "pytorchjob" and elastic_job(job):
        return dict(ELASTIC_ENVIRONMENT)
    if eks.job_kind == "hyperpod":
        return {"NNODES": str(topology_of(job).num_nodes)}
    return {}


def launcher(job: JobConfig) -> tuple[str, ...]:
    """The program that starts the ranks of one pod: torchrun as `python -m llm_launch.train.node_run` (the image's
    Python; the pod then ends with the exit code of the rank that failed first, 75 for a hang, not torchrun's 1), or
    HyperPod's own agent."""
    return (HYPERPOD_LAUNCHER,) if job.cluster.eks.job_kind == "hyperpod" else ("python", "-m", NODE_RUN)
