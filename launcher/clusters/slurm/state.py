"""Where a Slurm job stands: squeue (every state), then scontrol, then sacct, as each one forgets it.

squeue and scontrol know a job until MinJobAge (300 s by default) after it ended; only sacct
knows it after that, and only where accounting storage is configured
(https://slurm.schedmd.com/slurm.conf.html#OPT_MinJobAge). Once squeue says "Invalid job id",
each tool that fails or prints nothing hands over to the next.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from llm_launch.launcher.clusters.base import RunnerError
from llm_launch.launcher.clusters.tools import tool_output

ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
"""Job states after which nothing runs (https://slurm.schedmd.com/squeue.html#SECTION_JOB-STATE-CODES)."""
PENDING_HINTS = {
    "PartitionTimeLimit": "the time limit exceeds the partition's MaxTime: it will never start; stop it and "
                          "resubmit with a smaller cluster.slurm.time_limit",
    "PartitionNodeLimit": "more nodes than the partition allows: it will never start; stop it and resubmit "
                          "with fewer trainer.num_nodes or another cluster.slurm.partition",
    "ReqNodeNotAvail": "a node it needs is down, drained or reserved",
}
"""What a pending reason means for the user, where squeue's word alone does not say it
(https://slurm.schedmd.com/job_reason_codes.html)."""


@dataclass(frozen=True)
class JobState:
    """A job's state and Slurm's reason for it ('' when there is none)."""

    state: str
    reason: str = ""
    source: str = "squeue"

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def describe(self) -> str:
        """STATE (reason[: what it means])."""
        reason = self.reason if self.reason not in ("", "None") else ""
        if reason in PENDING_HINTS:
            reason = f"{reason}: {PENDING_HINTS[reason]}"
        return f"{self.state} ({reason})" if reason else self.state


def key_values(text: str) -> dict[str, str]:
    """The Key=Value words of scontrol's one-line output."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


def _from_squeue(squeue: str, job_id: str) -> JobState | None:
    """squeue's answer; None once it no longer knows the job. An unreachable controller is an error: the
    job may well be running, so no other source may answer for it."""
    done = subprocess.run([squeue, "-h", "-t", "all", "-j", job_id, "-o", "%T|%r"], capture_output=True, text=True,
                          check=False, timeout=60)
    if done.returncode and "Invalid job id" not in done.stderr:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise RunnerError(f"squeue failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    lines = done.stdout.strip().splitlines()
    if not lines or "|" not in lines[0]:
        return None
    state, reason = lines[0].split("|", 1)
    return JobState(state, reason, "squeue")


def _from_scontrol(scontrol: str, job_id: str) -> JobState | None:
    fields = key_values(tool_output([scontrol, "-o", "show", "job", job_id]))
    if "JobState" not in fields:
        return None
    return JobState(fields["JobState"], fields.get("Reason", ""), "scontrol")


def _from_sacct(sacct: str, job_id: str) -> JobState | None:
    lines = tool_output([sacct, "-n", "-X", "-P", "-j", job_id, "-o", "State,Reason"]).splitlines()
    if not lines or "|" not in lines[0]:
        return None
    state, reason = lines[0].split("|", 1)
    return JobState(state.split()[0], reason, "sacct")  # "CANCELLED by 0" is CANCELLED


def job_state(job_id: str, tools: dict[str, str | None]) -> JobState | None:
    """The first answer of squeue -t all, scontrol show job and sacct; None when none knows the job.
    `tools` maps each tool name to its path (None where it is not installed)."""
    for name, ask in (("squeue", _from_squeue), ("scontrol", _from_scontrol), ("sacct", _from_sacct)):
        path = tools.get(name)
        found = ask(path, job_id) if path else None
        if found:
            return found
    return None
