"""Two SageMaker hosts on one machine: a real two-node job, each node with its own private /opt/ml.

Each host is `unshare -m` (a mount namespace of its own) with its host folder bind-mounted over
/opt/ml and a hosts file naming algo-1 and algo-2 over /etc/hosts, then SageMaker's contract:
/opt/ml/input/config/resourceconfig.json, the data channels under /opt/ml/input/data and
`python -m llm_launch.launcher.container.sagemaker_entry --job /opt/ml/input/data/code/job.yaml`.
Nothing of one host is visible to the other unless a folder is bind-mounted into both
(shared=True: checkpoints, model output and pack folder on one shared folder, as on FSx).
Needs root (mount namespaces); the tests skip with the reason where that is missing.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from llm_launch.launcher.clusters.sagemaker.paths import PACK_DIR
from llm_launch.launcher.jobfile import write_job
from ports import free_port

HOSTS = ("algo-1", "algo-2")
CODE = "/opt/ml/input/data/code/job.yaml"
SHARED_MOUNTS = ("checkpoints", "model", PACK_DIR.removeprefix("/opt/ml/"))
"""Folders under /opt/ml that shared=True puts on one folder for both hosts."""
CHANNELS = {"train": "/opt/ml/input/data/train", "tokenizer": "/opt/ml/input/data/tokenizer"}


def namespaces_unavailable() -> str | None:
    """Why two private hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "mount namespaces need root"
    if not shutil.which("unshare"):
        return "util-linux unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m fails here: {probe.stderr.strip()}"


class TwoHosts:
    """Host folders under root (root/algo-1, root/algo-2 and, when shared, root/shared)."""

    def __init__(self, root: Path, *, shared: bool = False):
        self.root, self.shared = root, shared
        self.hosts_file = root / "hosts"
        root.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in HOSTS))
        Path("/opt/ml").mkdir(parents=True, exist_ok=True)  # the mount point
        self.proc: subprocess.Popen | None = None

    def host(self, name: str) -> Path:
        """What host `name` sees as /opt/ml."""
        return self.root / name

    def path(self, name: str, container_path: str) -> Path:
        """Where a container path of host `name` lies on this machine."""
        relative = container_path.removeprefix("/opt/ml/")
        if self.shared and any(relative == m or relative.startswith(m + "/") for m in SHARED_MOUNTS):
            return self.root / "shared" / relative
        return self.host(name) / relative

    def provision(self, job, files: dict[str, Path]) -> None:
        """Lay out each host: resource config, job.yaml in the code channel, the data channels."""
        for name in HOSTS:
            config = self.host(name) / "input" / "config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "resourceconfig.json").write_text(json.dumps(
                {"current_host": name, "hosts": list(HOSTS), "network_interface_name": "lo"}))
            write_job(job, self.path(name, CODE))
            for container_path, source in files.items():
                target = self.path(name, container_path)
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target, dirs_exist_ok=True)
                else:
                    shutil.copy2(source, target)
            for mount in SHARED_MOUNTS:
                self.path(name, f"/opt/ml/{mount}").mkdir(parents=True, exist_ok=True)
                (self.host(name) / mount).mkdir(parents=True, exist_ok=True)

    def _host_script(self, name: str) -> Path:
        """The script host `name` runs in its own mount namespace."""
        q = shlex.quote
        lines = [f"mount --bind {q(str(self.host(name)))} /opt/ml",
                 f"mount --bind {q(str(self.hosts_file))} /etc/hosts"]
        if self.shared:
            lines += [f"mount --bind {q(str(self.root / 'shared' / m))} /opt/ml/{m}" for m in SHARED_MOUNTS]
        lines.append(f"exec {q(sys.executable)} -m llm_launch.launcher.container.sagemaker_entry --job {CODE}")
        script = self.root / f"{name}.sh"
        script.write_text("set -e\n" + "\n".join(lines) + "\n")
        return script

    def start(self, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start both hosts (one process group, so a kill takes both); stdout of both in one stream."""
        environ = {**os.environ, "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1",
                   "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}", **(env or {})}
        script = " & ".join(
            f"(unshare -m sh {shlex.quote(str(self._host_script(h)))} > {shlex.quote(str(self.root / h))}.log 2>&1;"
            f" echo $? > {shlex.quote(str(self.root / h))}.rc)" for h in HOSTS) + " & wait"
        for h in HOSTS:
            (self.root / f"{h}.rc").unlink(missing_ok=True)
        self.proc = subprocess.Popen(["sh", "-c", script], env=environ, start_new_session=True)
        return self.proc

    def wait(self, timeout: float = 600) -> dict[str, int]:
        """Exit code of each host."""
        self.proc.wait(timeout=timeout)
        return {h: int((self.root / f"{h}.rc").read_text()) for h in HOSTS}

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {h}\n{self.log(h)[-4000:]}" for h in HOSTS)

    def run(self, job, files: dict[str, Path], timeout: float = 600,
            env: dict[str, str] | None = None) -> dict[str, int]:
        self.provision(job, files)
        self.start(env)
        return self.wait(timeout)

    def kill_when(self, ready, timeout: float = 300) -> None:
        """SIGKILL both hosts (no handler runs) as soon as ready() holds."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, "the job ended before it could be killed:\n" + self.logs()
            assert time.monotonic() < deadline, "never ready to be killed:\n" + self.logs()
            time.sleep(0.05)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
