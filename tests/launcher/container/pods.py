"""A rendered Kubernetes job run as its controller would run it: one private network and file system per pod.

The Kubernetes counterpart of two_hosts.py. It reads the manifest llm-launch rendered (ConfigMap + PyTorchJob or
TrainJob) and starts each pod the controller would create:
* a network namespace per pod, its eth0 a veth on a bridge that lives in a namespace of its own (10.244.<n>.0/24
  for the n-th cluster, so that several jobs run side by side: addresses that exist only inside these namespaces),
  pod names resolved as the operator's headless Services
  resolve them (an /etc/hosts per pod);
* a mount namespace and UTS namespace per pod (hostname = pod name), the ConfigMap's keys as files at the volume's
  mountPath, one host folder as the PersistentVolumeClaim at its mountPath, a memory tmpfs at /dev/shm;
* exactly the environment the controller injects (below, from its source), on top of the container's own env;
* restartPolicy OnFailure: a pod whose container exits non-zero is started again, same name and address, after a
  back-off (kubelet's first, 10 s), up to runPolicy.backoffLimit times
  (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#restart-policy).

Injected environment:
* PyTorchJob (kubeflow/training-operator v1.9, branch release-1.9, pkg/controller.v1/pytorch/envvar.go, master.go
  and elastic.go): PYTHONUNBUFFERED=1; with a Master: MASTER_PORT and PET_MASTER_PORT (the Master's
  pytorchjob-port), MASTER_ADDR and PET_MASTER_ADDR=<job>-master-0, WORLD_SIZE=replicas x nprocPerNode, RANK and
  PET_NODE_RANK (the replica index, Workers + 1); PET_NPROC_PER_NODE=nprocPerNode; without elasticPolicy
  PET_NNODES=<replicas>; with it PET_RDZV_ENDPOINT=<rdzvHost or <job>-worker-0>:<rdzvPort or the Worker's port>,
  PET_RDZV_BACKEND, PET_NNODES=<min>:<max>, PET_MAX_RESTARTS. `operator_version="1.6"` injects what v1.6.0 did:
  PYTHONUNBUFFERED, MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK only
  (https://github.com/kubeflow/training-operator/blob/v1.6.0/pkg/controller.v1/pytorch/envvar.go).
* TrainJob with the torch-distributed runtime (kubeflow/trainer v2.3.0,
  pkg/runtime/framework/plugins/torch/torch.go): PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK (the Job completion
  index), PET_MASTER_ADDR=<job>-node-0-0.<job>, PET_MASTER_PORT=29500. JobSet names the pods
  <jobset>-<replicatedJob>-<jobIndex>-<podIndex> with the JobSet's name as their subdomain.
* A Deployment rendered beside the job (the etcd rendezvous server of an elastic etcd PyTorchJob) runs as one pod
  with no injected environment, started before the job's pods; its Service's name resolves to that pod's address
  (standing in for the ClusterIP kube-proxy would route). Its image's etcd is Debian's (package etcd-server, etcd
  3.4, which still serves the v2 API torch's etcd rendezvous speaks with --enable-v2), and its data dir, the
  container's writable layer, is a fresh folder per run.
* S3 (s3_seed): a stand-in, since the pods cannot reach AWS: moto_server runs as a pod named `s3` on the bridge,
  holding the seeded folders, and the job's pods get AWS_ENDPOINT_URL=http://s3:5000 with moto's test keys. On EKS
  the keys would come from the pod's service account: the IRSA webhook injects AWS_ROLE_ARN and
  AWS_WEB_IDENTITY_TOKEN_FILE and boto3 exchanges the token with STS
  (https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html), which moto has no
  counterpart for; either way the manifest holds no secret.
Where the ConfigMap's image would have llm-launch installed, the pods run this checkout's Python (PATH).
Needs root (namespaces, veth, bridge); the tests skip with the reason where that is missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.244"
"""Cluster n's pods get 10.244.<n>.10 and up, on a bridge of its own: several jobs can run side by side."""
BRIDGE = "br0"
RESTART_DELAY_S = 10.0
"""kubelet's first restart back-off. Shorter is not faithful: a static torchrun restarted before its peers have
noticed the loss joins their dying rendezvous."""
S3_PORT = 5000
S3_REGION = "us-west-2"
S3_ENV = {"AWS_ENDPOINT_URL": f"http://s3:{S3_PORT}", "AWS_ACCESS_KEY_ID": "testing",
          "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": S3_REGION, "AWS_DEFAULT_REGION": S3_REGION}
"""What the job's pods get from the S3 stand-in (in place of IRSA's role and token file)."""
SEED_S3 = """
import json, socket, sys, time
from pathlib import Path
import boto3
url, seeds, port, region = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for _ in range(600):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        time.sleep(0.2)
s3 = boto3.client("s3", endpoint_url=url, region_name=region, aws_access_key_id="testing",
                  aws_secret_access_key="testing")
for uri, folder in seeds.items():
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    for file in Path(folder).rglob("*"):
        if file.is_file():
            s3.upload_file(str(file), bucket, f"{prefix.rstrip('/')}/{file.relative_to(folder)}")
"""
TRAINER_PORT = 29500
"""constants.ContainerTrainerPort of Kubeflow Trainer v2.3.0."""


HARNESS_MARK = ".llm-launch-pod-harness"
"""A file in each host folder the harness created as a mount point (and may remove again)."""
MOUNT_LOCKS = Path("/tmp/llm-launch-pod-mounts")
"""One lock file per mount point: every running cluster, in any process, holds a shared lock on it, and a folder
is removed only by a cluster that can then take it exclusively. Removing a mount point on the host detaches the
mounts on it in every pod's mount namespace, so a folder in use by another cluster must stay."""
_MOUNT_LOCK = threading.Lock()


def _lock_file(path: Path) -> Path:
    MOUNT_LOCKS.mkdir(parents=True, exist_ok=True)
    return MOUNT_LOCKS / (str(path).strip("/").replace("/", "_") + ".lock")


def pods_unavailable() -> str | None:
    """Why pods cannot run here, or None."""
    if os.geteuid() != 0:
        return "network and mount namespaces need root"
    for tool in ("ip", "unshare"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    probe = subprocess.run(["unshare", "--net", "--mount", "--uts", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"namespaces are not available here: {probe.stderr.strip()}"


@dataclass
class Pod:
    """One pod as the controller creates it."""

    name: str
    container: dict
    spec: dict
    env: dict[str, str]
    aliases: list[str] = field(default_factory=list)
    """Other names that resolve to this pod (its FQDN under a subdomain)."""
    restarts: int = 0
    ended: bool = False
    """Whether the current run's exit has been seen."""
    process: subprocess.Popen | None = None
    exit_codes: list[int] = field(default_factory=list)


def _int_nproc(spec: dict) -> int:
    value = str(spec.get("nprocPerNode", "auto"))
    return int(value) if value.isdigit() else 1


def _port(container: dict, name: str, default: int) -> int:
    return next((p["containerPort"] for p in container.get("ports", []) if p.get("name") == name), default)


def etcd_unavailable() -> str | None:
    """Why an elastic etcd job cannot run here, or None: Debian's etcd-server and torch's etcd client (python-etcd)."""
    if not shutil.which("etcd"):
        return "etcd is not installed (apt-get install etcd-server)"
    try:
        import etcd  # noqa: F401  (python-etcd, which torch.distributed.elastic.rendezvous.etcd_rendezvous imports)
    except ImportError:
        return "python-etcd is not installed (pip install -e '.[dev]')"
    return None


def deployment_pods(docs: list[dict]) -> list[Pod]:
    """One pod per Deployment (replicas 1), reachable under the name of the Service that selects it."""
    pods = []
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        template = doc["spec"]["template"]
        labels = template["metadata"]["labels"]
        services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"
                    and d["spec"]["selector"].items() <= labels.items()]
        container = dict(template["spec"]["containers"][0])
        command = list(container["command"])
        if Path(command[0]).name == "etcd":  # the image's etcd binary is this machine's
            command[0] = shutil.which("etcd") or command[0]
        container["command"] = command
        pods.append(Pod(f"{doc['metadata']['name']}-0", container, template["spec"], {}, aliases=services))
    return pods


def pytorchjob_pods(doc: dict, operator_version: str = "1.9") -> list[Pod]:
    """The pods of a PyTorchJob and the environment the v1 operator gives each."""
    name, spec = doc["metadata"]["name"], doc["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    total = sum(r["replicas"] for r in replicas.values())
    nproc = spec.get("nprocPerNode", "auto")
    elastic = spec.get("elasticPolicy")
    pods = []
    for role in ("Master", "Worker"):
        if role not in replicas:
            continue
        template = replicas[role]["template"]
        container = next(c for c in template["spec"]["containers"] if c["name"] == "pytorch")
        for index in range(replicas[role]["replicas"]):
            env = {"PYTHONUNBUFFERED": "1"}
            if "Master" in replicas:
                master = replicas["Master"]["template"]["spec"]["containers"][0]
                port, addr = str(_port(master, "pytorchjob-port", 23456)), f"{name}-master-0"
                rank = str(index + (1 if role == "Worker" else 0))
                env.update(MASTER_PORT=port, MASTER_ADDR=addr, WORLD_SIZE=str(total * _int_nproc(spec)), RANK=rank)
                if operator_version != "1.6":
                    env.update(PET_MASTER_PORT=port, PET_MASTER_ADDR=addr, PET_NODE_RANK=rank)
            if operator_version != "1.6":
                env["PET_NPROC_PER_NODE"] = str(nproc)
                if elastic:
                    worker = replicas["Worker"]["template"]["spec"]["containers"][0]
                    host = elastic.get("rdzvHost", f"{name}-worker-0")
                    env["PET_RDZV_ENDPOINT"] = f"{host}:{elastic.get('rdzvPort', _port(worker, 'pytorchjob-port', 23456))}"
                    env["PET_RDZV_BACKEND"] = elastic.get("rdzvBackend", "c10d")
                    env["PET_NNODES"] = f"{elastic['minReplicas']}:{elastic['maxReplicas']}"
                    if "maxRestarts" in elastic:
                        env["PET_MAX_RESTARTS"] = str(elastic["maxRestarts"])
                else:
                    env["PET_NNODES"] = str(total)
            pods.append(Pod(f"{name}-{role.lower()}-{index}", container, template["spec"], env))
    return pods


def trainjob_pods(doc: dict) -> list[Pod]:
    """The pods of a TrainJob on the torch-distributed runtime and what its torch plugin injects."""
    name, spec = doc["metadata"]["name"], doc["spec"]
    trainer = spec["trainer"]
    patch = spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod_spec = patch["template"]["spec"]["template"]["spec"]
    mounts = pod_spec["containers"][0].get("volumeMounts", [])
    container = {"name": "node", "image": trainer["image"], "command": trainer["command"],
                 "env": trainer.get("env", []), "volumeMounts": mounts}
    pods = []
    for index in range(trainer["numNodes"]):
        env = {"PET_NNODES": str(trainer["numNodes"]), "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
               "PET_NODE_RANK": str(index), "PET_MASTER_ADDR": f"{name}-node-0-0.{name}",
               "PET_MASTER_PORT": str(TRAINER_PORT)}
        pod = f"{name}-node-0-{index}"
        pods.append(Pod(pod, container, pod_spec, env, aliases=[f"{pod}.{name}"]))
    return pods


class Cluster:
    """Pods of one rendered job on this machine; pvc is the host folder standing in for every claim."""

    def __init__(self, root: Path, docs: list[dict], pvc: Path, *, operator_version: str = "1.9",
                 restart_delay_s: float = RESTART_DELAY_S, index: int = 0, s3_seed: dict[str, Path] | None = None):
        self.root, self.pvc, self.restart_delay_s = root, pvc, restart_delay_s
        root.mkdir(parents=True, exist_ok=True)
        self.config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
        job = next(d for d in docs if d["kind"] in ("PyTorchJob", "TrainJob"))
        self.job = job
        self.pods = pytorchjob_pods(job, operator_version) if job["kind"] == "PyTorchJob" else trainjob_pods(job)
        self.services = deployment_pods(docs)
        """Pods of the Deployments beside the job (and the S3 stand-in): started first, never awaited, stopped last."""
        self.s3_seed = s3_seed
        """s3:// URI -> host folder uploaded to the S3 stand-in before the job's pods start (None: no S3)."""
        if s3_seed is not None:
            moto = str(Path(sys.executable).parent / "moto_server")
            self.services.append(Pod("s3", {"command": [moto, "-H", "0.0.0.0", "-p", str(S3_PORT)]}, {}, {}))
        self.backoff_limit = job["spec"].get("runPolicy", {}).get("backoffLimit", 6)
        self.tag = f"k{os.getpid() % 100000}-{index}"
        every = [*self.pods, *self.services]
        self.netns = {p.name: f"{self.tag}-{i}" for i, p in enumerate(every)}
        self.bridge_ns = f"{self.tag}-br"
        self.address = {p.name: f"{SUBNET}.{index}.{10 + i}" for i, p in enumerate(every)}
        self.mount_points: dict[Path, object] = {}
        """Mount points the harness created (this cluster or another), with this cluster's shared lock on each."""
        self.bin = root / "bin"

    # --- network -------------------------------------------------------------------------------------------
    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def _network_up(self) -> None:
        self._ip("netns", "add", self.bridge_ns)
        self._ip("-n", self.bridge_ns, "link", "add", BRIDGE, "type", "bridge")
        self._ip("-n", self.bridge_ns, "link", "set", BRIDGE, "up")
        for i, pod in enumerate([*self.pods, *self.services]):
            ns, peer = self.netns[pod.name], f"veth{i}"
            self._ip("netns", "add", ns)
            self._ip("-n", self.bridge_ns, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._ip("-n", self.bridge_ns, "link", "set", peer, "master", BRIDGE, "up")
            self._ip("-n", ns, "addr", "add", f"{self.address[pod.name]}/24", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            self._ip("-n", ns, "link", "set", "lo", "up")

    def _network_down(self) -> None:
        for ns in [*self.netns.values(), self.bridge_ns]:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)

    def _hosts_file(self, pod: Pod) -> Path:
        """/etc/hosts of one pod: kubelet's own lines, then every pod as its headless Service resolves it."""
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        lines += [f"{self.address[p.name]} {' '.join([*p.aliases, p.name])}" for p in [*self.pods, *self.services]]
        path = self.root / "hosts" / pod.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    # --- file systems ----------------------------------------------------------------------------------------
    def _mount_point(self, path: str) -> None:
        target = Path(path)
        with _MOUNT_LOCK:
            if not target.exists():
                missing = next(p for p in [target, *target.parents] if p.parent.exists())
                target.mkdir(parents=True, exist_ok=True)
                (missing / HARNESS_MARK).touch()
            created = next((p for p in [target, *target.parents] if (p / HARNESS_MARK).exists()), None)
            if created is not None and created not in self.mount_points:
                held = _lock_file(created).open("a")
                fcntl.flock(held, fcntl.LOCK_SH)
                self.mount_points[created] = held
                if not target.exists():  # removed by a cluster that stopped while this one took its lock
                    target.mkdir(parents=True, exist_ok=True)
                    (created / HARNESS_MARK).touch()

    def _mounts(self, pod: Pod) -> list[str]:
        """Shell lines binding each volume at its mountPath inside the pod's mount namespace."""
        q = shlex.quote
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        lines = []
        for mount in pod.container.get("volumeMounts", []):
            volume, path = volumes[mount["name"]], mount["mountPath"]
            if "configMap" in volume:
                source = self.root / "configmaps" / pod.name / volume["configMap"]["name"]
                source.mkdir(parents=True, exist_ok=True)
                for key, text in self.config_maps[volume["configMap"]["name"]].items():
                    (source / key).write_text(text)
                self._mount_point(path)
                lines.append(f"mount --bind {q(str(source))} {q(path)}")
            elif "persistentVolumeClaim" in volume:
                self._mount_point(path)
                lines.append(f"mount --bind {q(str(self.pvc))} {q(path)}")
            elif "emptyDir" in volume and volume["emptyDir"].get("medium") == "Memory":
                lines.append(f"mount -t tmpfs -o size=1g tmpfs {q(path)}")
        command = pod.container["command"]
        if "--data-dir" in command:  # etcd's data in the container's own (fresh) writable layer
            layer = self.root / "layers" / pod.name
            layer.mkdir(parents=True, exist_ok=True)
            data_dir = str(Path(command[command.index("--data-dir") + 1]).parent)
            self._mount_point(data_dir)
            lines.append(f"mount --bind {q(str(layer))} {q(data_dir)}")
        return lines

    def _launcher_shims(self) -> None:
        """What the image would hold: torchrun of this Python on PATH."""
        self.bin.mkdir(parents=True, exist_ok=True)
        shim = self.bin / "torchrun"
        shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m torch.distributed.run \"$@\"\n")
        shim.chmod(0o755)

    # --- pods --------------------------------------------------------------------------------------------------
    def _environment(self, pod: Pod) -> dict[str, str]:
        env = {"PATH": f"{self.bin}:{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
               "HOME": "/root", "HOSTNAME": pod.name, "OMP_NUM_THREADS": "1"}
        for item in pod.container.get("env", []):
            assert "value" in item, f"{item['name']}: only literal env values run here"
            env[item["name"]] = item["value"]
        if self.s3_seed is not None and pod in self.pods:
            env.update(S3_ENV)  # what the service account's credentials would give (see the module docstring)
        env.update(pod.env)  # the controller's variables are appended after the container's own
        return env

    def _start(self, pod: Pod) -> None:
        q = shlex.quote
        log = (self.root / f"{pod.name}.log").open("a")
        log.write(f"--- start {pod.restarts}\n")
        log.flush()
        env = " ".join(f"{k}={q(v)}" for k, v in self._environment(pod).items())
        script = "\n".join(["set -e", "mount --make-rprivate /", *self._mounts(pod),
                            f"mount --bind {q(str(self._hosts_file(pod)))} /etc/hosts", f"hostname {q(pod.name)}",
                            f"exec env -i {env} {' '.join(q(a) for a in pod.container['command'])}"])
        path = self.root / f"{pod.name}.sh"
        path.write_text(script + "\n")
        pod.ended = False
        pod.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns[pod.name], "unshare", "--mount", "--uts", "sh", str(path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")

    def start(self) -> None:
        self._launcher_shims()
        self._network_up()
        for pod in self.services:
            self._start(pod)
        if self.s3_seed is not None:
            seeds = json.dumps({uri: str(folder) for uri, folder in self.s3_seed.items()})
            subprocess.run(["ip", "netns", "exec", self.netns["s3"], sys.executable, "-c", SEED_S3,
                            f"http://127.0.0.1:{S3_PORT}", seeds, str(S3_PORT), S3_REGION],
                           check=True, capture_output=True, timeout=300)
        for pod in self.pods:
            self._start(pod)

    def pod(self, name_suffix: str) -> Pod:
        return next(p for p in self.pods if p.name.endswith(name_suffix))

    def kill(self, pod: Pod) -> None:
        """SIGKILL every process of the pod (a node lost, an OOM kill): no handler runs."""
        os.killpg(pod.process.pid, signal.SIGKILL)

    def wait(self, timeout: float = 600, until=None) -> dict[str, list[int]]:
        """Run until every pod has succeeded or one has failed for good, restarting failed pods (OnFailure);
        the exit codes of each pod's runs. until(): return as soon as it holds."""
        deadline = time.monotonic() + timeout
        restart_at: dict[str, float] = {}
        while until is None or not until():
            now = time.monotonic()
            for pod in self.pods:
                if pod.name in restart_at:
                    if now >= restart_at[pod.name]:
                        del restart_at[pod.name]
                        pod.restarts += 1
                        self._start(pod)
                    continue
                code = pod.process.poll()
                if code is None or pod.ended:
                    continue
                pod.exit_codes.append(code)
                pod.ended = True
                if code != 0 and pod.restarts < self.backoff_limit:
                    restart_at[pod.name] = now + self.restart_delay_s
            if all(p.ended and p.exit_codes[-1] == 0 for p in self.pods):
                break
            if any(p.ended and p.exit_codes[-1] != 0 and p.name not in restart_at for p in self.pods):
                break
            assert now < deadline, "pods did not finish in time:\n" + self.logs()
            time.sleep(0.2)
        return {p.name: list(p.exit_codes) for p in self.pods}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{(self.root / f'{p.name}.log').read_text(errors='replace')[-3000:]}"
                         for p in [*self.pods, *self.services] if (self.root / f"{p.name}.log").exists())

    def stop(self) -> None:
        for pod in [*self.pods, *self.services]:
            if pod.process and pod.process.poll() is None:
                os.killpg(pod.process.pid, signal.SIGKILL)
                pod.process.wait(timeout=30)
        self._network_down()
        with _MOUNT_LOCK:
            for path, held in self.mount_points.items():
                held.close()  # this cluster's shared lock
                with _lock_file(path).open("a") as last:
                    try:
                        fcntl.flock(last, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # another cluster still uses it
                    shutil.rmtree(path, ignore_errors=True)
            self.mount_points.clear()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
