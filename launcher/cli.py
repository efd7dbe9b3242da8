"""The llm-launch command: a Hydra application.

overrides -> composed config -> typed JobConfig -> validation and plan -> rendered files
-> submission. Mistakes in the config end the command with one line per problem and exit
code 2, before anything runs.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from llm_launch.launcher.aws_errors import aws_error_line
from llm_launch.launcher.clusters import MANAGE_ACTIONS, cluster_of, manage
from llm_launch.launcher.clusters.base import RunFailed, RunnerError
from llm_launch.launcher.compose import to_job
from llm_launch.launcher.compose_errors import COMPOSITION_ERRORS, problem_from_exception
from llm_launch.launcher.config import store
from llm_launch.launcher.jobfile import JOB_FILE, write_job, write_text_atomic
from llm_launch.launcher.plan import Plan
from llm_launch.launcher.problems import USAGE_EXIT_CODE, JobProblems, Problem, exit_with_problems
from llm_launch.launcher.report import print_plan
from llm_launch.launcher.secrets import SecretInFile
from llm_launch.launcher.stop import Stopped, default_stop_signals, stop_before_start
from llm_launch.launcher.validate import validate
from omegaconf import DictConfig

PLAN_FILE = "plan.json"
SUGGEST_FILE = "suggest.json"


def run_job(cfg: DictConfig) -> Plan | None:
    """The body of one Hydra job (one combination under -m); its plan, for the sweep's summary table
    (launcher/sweep_summary.py), where the action makes one."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    job = to_job(cfg, out_dir)
    if job.action in MANAGE_ACTIONS:
        manage_submitted(job.action, out_dir)
        return
    if job.action == "suggest":
        run_suggest(job, out_dir)
        return
    findings, plan = validate_with_memory(job)
    if findings.problems:
        raise JobProblems(findings.problems)
    plan = dataclasses.replace(plan, warnings=findings.warnings)
    print_plan(plan)
    cluster = cluster_of(job)
    try:
        held = cluster.hold_output_dir(out_dir)  # before anything is written: a refused run changes nothing there
    except RunnerError as exc:
        print(f"llm-launch: {exc}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    with held:
        write_and_submit(job, plan, cluster, out_dir)
    return plan


def write_and_submit(job, plan, cluster, out_dir: Path) -> None:
    """Write plan.json, then per the action job.yaml and the cluster's files, then submit."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / PLAN_FILE, json.dumps(plan.to_dict(), indent=2) + "\n")
    action = cluster.default_action if job.action == "auto" else job.action
    if action == "plan":
        print(f"llm-launch: plan written to {out_dir / PLAN_FILE}")
        return
    job = cluster.container_job(job)  # job.yaml holds the paths the cluster's processes see
    job_yaml = write_job(job, out_dir / JOB_FILE)
    rendered = cluster.render(job, plan, out_dir, job_yaml)
    print(f"llm-launch: rendered {', '.join(str(p) for p in [job_yaml, *rendered])}")
    if action == "submit":
        if not cluster.runs_here:
            default_stop_signals()
        submit(job, plan, out_dir, job_yaml)


def validate_with_memory(job):
    """validate(), with the memory that plan.memory asks for: the estimate, or a trace of the real model."""
    findings, plan = validate(job)
    if job.plan.memory != "traced" or plan is None:
        return findings, plan
    others = [p for p in findings.problems if p.field != "memory"]
    if others:
        raise JobProblems(others)  # the trace needs a sound layout
    from llm_launch.launcher.memory_trace import traced_memory

    print(f"llm-launch: tracing one training step of {job.model.name} on fake tensors (plan.memory=traced)...",
          flush=True)
    return validate(job, memory=traced_memory(job))  # the trace prints each phase as it starts


def run_suggest(job, out_dir: Path) -> None:
    """action=suggest: print the best layouts that fit, each with the overrides that select it."""
    from llm_launch.launcher.report import print_suggestions
    from llm_launch.launcher.suggest import suggest_report

    report = suggest_report(job, base_overrides())
    print_suggestions(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / SUGGEST_FILE, json.dumps(report.to_dict(), indent=2) + "\n")
    print(f"llm-launch: suggestions written to {out_dir / SUGGEST_FILE}")


def base_overrides() -> list[str]:
    """The command line's overrides, without the ones a suggestion replaces."""
    replaced = ("action=", "output_dir=", "hydra.", "plan.")
    return [o for o in HydraConfig.get().overrides.task if not o.startswith(replaced)]


def submit(job, plan, out_dir: Path, job_yaml: Path) -> None:
    """Hand the rendered job to its cluster; a failure ends the command with one line."""
    try:
        cluster_of(job).submit(job, plan, out_dir, job_yaml)
    except RunnerError as exc:
        print(f"llm-launch: {exc}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    except RunFailed as exc:
        print(f"llm-launch: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def manage_submitted(action: str, out_dir: Path) -> None:
    """status, logs or stop of the job last submitted from out_dir."""
    try:
        manage(action, out_dir)
    except RunnerError as exc:
        print(f"llm-launch: {exc}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)


@hydra.main(config_path=str(store.CONF_DIR), config_name=store.PRIMARY_CONFIG, version_base="1.3")
def _hydra_entry(cfg: DictConfig) -> Plan | None:
    try:
        return run_job(cfg)
    except JobProblems as exc:
        exit_with_problems(exc.problems)
    except SecretInFile as exc:
        print(f"llm-launch: {exc}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    except BrokenPipeError:  # what read our output stopped reading (`| head`): not a problem of the job
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # botocore's local errors (no such AWS_PROFILE, an unparsable ~/.aws/config)
        problem = aws_config_problem(exc)
        if problem is None:
            raise
        exit_with_problems([problem])


def diagnose_overrides(overrides: list[str]) -> tuple[list[Problem], list[str]]:
    """Compose once per override to name every bad one, not only the first Hydra met; also return the
    overrides that composed."""
    from hydra import compose, initialize_config_dir
    from llm_launch.launcher.config.schema import JobConfig
    from omegaconf import OmegaConf

    schema_cfg = OmegaConf.structured(JobConfig)
    accepted: list[str] = []
    problems: list[Problem] = []
    with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
        for override in overrides:
            try:
                compose(store.PRIMARY_CONFIG, overrides=[*accepted, override])
                accepted.append(override)
            except COMPOSITION_ERRORS as exc:
                problems.append(problem_from_exception(exc, schema_cfg, override))
    return problems, accepted


def problems_beside(accepted: list[str], reported: set[str]) -> list[Problem]:
    """What validation finds in the job composed from the overrides that composed, on fields not yet
    reported, so that a bad override does not hide the job's other problems."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(store.CONF_DIR), version_base="1.3"):
            cfg = compose(store.PRIMARY_CONFIG, overrides=accepted)
        findings, _ = validate(to_job(cfg, Path(cfg.output_dir)))
        found = findings.problems
    except JobProblems as exc:
        found = exc.problems
    except COMPOSITION_ERRORS:
        return []
    return [p for p in found if p.field not in reported]


def compose_once() -> None:
    """Spare Hydra its first composition of every run, made only to read hydra.mode.

    hydra.main composes the whole config twice: Hydra.get_mode composes it to read hydra.mode, then the run
    composes it again (hydra/_internal/utils.py _run_hydra and _run_app in hydra-core 1.3,
    https://github.com/facebookresearch/hydra/blob/v1.3.2/hydra/_internal/utils.py#L392). No config we ship
    sets hydra.mode (tests/launcher/test_compose_once.py), so unless an override names it, get_mode's answer is
    HydraConf.mode's default, None, and _run_app then picks RUN, or MULTIRUN under -m, exactly as before.
    """
    from hydra._internal.hydra import Hydra

    if getattr(Hydra.get_mode, "composes_once", False):
        return
    reads_config = Hydra.get_mode

    def get_mode(self, config_name, overrides):
        if any("hydra.mode" in override for override in overrides):
            return reads_config(self, config_name, overrides)
        return None

    get_mode.composes_once = True
    Hydra.get_mode = get_mode


def main() -> None:
    """Console entry point."""
    compose_once()
    stop_before_start()
    store.register()
    store.register_recipes(store.recipes_named(sys.argv[1:]))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # composition errors reach us, to be reported as one line each
    try:
        _hydra_entry()
    except Stopped as stop:
        print(f"llm-launch: stopped by signal {stop.signum} before the job started; nothing was trained",
              file=sys.stderr)
        sys.exit(1)
    except COMPOSITION_ERRORS as exc:
        store.register_recipes()  # every option, for messages that list them
        overrides = [a for a in sys.argv[1:] if not a.startswith("-") and not a.startswith("hydra.")]
        problems, accepted = diagnose_overrides(overrides)
        if not problems:  # the fault is in a config file, not in an override
            exit_with_problems([problem_from_exception(exc)])
        reported = {p.field.split("=")[0] for p in problems}
        exit_with_problems(problems + problems_beside(accepted, reported))
    except OSError as exc:  # Hydra creates output_dir before the job's own checks run
        exit_with_problems([output_dir_problem(exc)])


def aws_config_problem(exc: Exception) -> Problem | None:
    """The one-line problem for the AWS configuration botocore could not read wherever the launcher asked AWS
    (the plan's S3 data checks, submission), or None for any other exception."""
    try:
        from botocore import exceptions as bx
    except ImportError:
        return None
    if isinstance(exc, bx.ProfileNotFound):
        return Problem("AWS_PROFILE", aws_error_line("reading the AWS configuration", exc))
    if isinstance(exc, bx.ConfigParseError):
        return Problem("AWS_CONFIG_FILE", aws_error_line("reading the AWS configuration", exc))
    return None


def output_dir_problem(exc: OSError) -> Problem:
    """The one-line problem for an output folder the system refuses to create or write."""
    if exc.errno == errno.ENAMETOOLONG:
        return Problem("output_dir", f"a folder name in {exc.filename} is longer than the file system allows (255 "
                       "bytes); shorten job_name (the default output_dir is outputs/<job_name>) or set output_dir")
    return Problem("output_dir", f"cannot create or write {exc.filename}: {exc.strerror}; set output_dir=<a folder "
                   "you can write>")


if __name__ == "__main__":
    main()
