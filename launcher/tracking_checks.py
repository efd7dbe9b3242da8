"""Whether each enabled experiment tracker can record a job where this check runs: its client installed, its
server reachable, its key readable. Nothing heavy is imported (clients are looked up, not imported) and
servers are reached with a short timeout.

The launcher runs these at plan time for jobs that run here (llm_launch.launcher.validate); the job runs
them again where it runs, before training (llm_launch.train.tracking.start_trackers), whose tracker modules
open the runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib.util import find_spec

from llm_launch.launcher.config.schema import JobConfig, TrackingBackend, WandbMode
from llm_launch.launcher.config.tracking import mlflow_folder_problem

MLFLOW_EXTRA_HINT = "pip install 'llm-launch[mlflow]'"
WANDB_EXTRA_HINT = "pip install 'llm-launch[wandb]'"
ARN_PREFIX = "arn:"
WANDB_KEY_VARIABLE = "WANDB_API_KEY"
WANDB_DEFAULT_SERVER = "https://api.wandb.ai"


def redact_uri(uri: str) -> str:
    """A URI without the user:password part of its host, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def reach(url: str, timeout_s: float = 5.0) -> str | None:
    """None when an HTTP GET of url gets any answer, else why not (one line)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason).strip().splitlines()[0] if str(reason).strip() else type(exc).__name__


def tensorboard_problem(job: JobConfig) -> str | None:
    return None  # a dependency of llm-launch itself, writing local files


def mlflow_tracking_uri(job: JobConfig) -> str | None:
    return job.tracking.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def mlflow_server_url(uri: str) -> str:
    """The HTTP(S) address requests for a tracking URI go to (an ARN through the plugin's own resolver,
    https://docs.aws.amazon.com/sagemaker/latest/dg/mlflow-track-experiments.html)."""
    if uri.startswith(ARN_PREFIX):
        from sagemaker_mlflow.mlflow_sagemaker_helpers import SageMakerMLflowHostMetadataProvider

        provider = SageMakerMLflowHostMetadataProvider()
        provider.set_arn(uri)
        return provider.construct_tracking_server_url()
    return uri


def mlflow_problem(job: JobConfig) -> str | None:
    if find_spec("mlflow") is None:
        return f"the mlflow client is not installed where the job runs; {MLFLOW_EXTRA_HINT}"
    uri = mlflow_tracking_uri(job)
    if uri is None:
        return ("no tracking server: set tracking.mlflow.tracking_uri (http(s)://host:port, sqlite:///<path>/mlflow.db, "
                "or a SageMaker MLflow tracking server ARN) or MLFLOW_TRACKING_URI")
    folder = mlflow_folder_problem(uri)
    if folder:
        return folder
    if uri.startswith(ARN_PREFIX):
        if find_spec("sagemaker_mlflow") is None:
            return f"a SageMaker MLflow tracking server ARN needs the sagemaker-mlflow plugin; {MLFLOW_EXTRA_HINT}"
        try:
            url = mlflow_server_url(uri)
        except Exception as exc:  # the plugin's own exception types for a malformed ARN
            return f"{uri} is not a SageMaker MLflow tracking server ARN ({exc})"
    elif uri.startswith(("http://", "https://")):
        url = uri
    else:
        if find_spec("sqlalchemy") is None:  # mlflow-skinny has no database stores
            return f"a database tracking URI ({uri.split(':', 1)[0]}) needs the full mlflow package; pip install mlflow"
        return None  # a database the job writes
    why = reach(url.rstrip("/") + ("/health" if url == uri else "/"))
    if why:
        return f"cannot reach the MLflow tracking server at {redact_uri(url)} ({why}); start it or fix the URI"
    return None


def wandb_api_key_from_secret(secret_id: str) -> str:
    """The key held by a Secrets Manager secret: its string, or the api_key field of a JSON string."""
    import boto3

    text = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    return str(data.get("api_key", "")) if isinstance(data, dict) else text.strip()


def wandb_api_key(job: JobConfig) -> tuple[str | None, str | None]:
    """(key, why there is none): WANDB_API_KEY, or the Secrets Manager secret tracking.wandb.api_key_secret."""
    if os.environ.get(WANDB_KEY_VARIABLE):
        return os.environ[WANDB_KEY_VARIABLE], None
    secret = job.tracking.wandb.api_key_secret
    if not secret:
        return None, (f"no API key: set {WANDB_KEY_VARIABLE} in the job's environment or tracking.wandb.api_key_secret "
                      "to a Secrets Manager secret holding it")
    try:
        key = wandb_api_key_from_secret(secret)
    except Exception as exc:  # botocore's errors: no credentials, no such secret, access denied
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"cannot read the API key from secret {secret} ({first})"
    return (key, None) if key else (None, f"secret {secret} holds no API key (a string, or JSON with api_key)")


def wandb_problem(job: JobConfig) -> str | None:
    if find_spec("wandb") is None:
        return f"the wandb client is not installed where the job runs; {WANDB_EXTRA_HINT}"
    if job.tracking.wandb.mode == WandbMode.offline:
        return None
    _, why = wandb_api_key(job)
    if why:
        return why
    server = os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_SERVER)
    unreachable = reach(server)
    return f"cannot reach the W&B server at {server} ({unreachable})" if unreachable else None


CHECKS: dict[TrackingBackend, tuple[str, Callable[[JobConfig], str | None]]] = {
    TrackingBackend.tensorboard: ("tracking.backends", tensorboard_problem),
    TrackingBackend.mlflow: ("tracking.mlflow.tracking_uri", mlflow_problem),
    TrackingBackend.wandb: ("tracking.wandb", wandb_problem),
}
"""backend -> (the config key a problem names, why the backend cannot record this job here or None)."""


def tracking_problems(job: JobConfig) -> list[tuple[str, str]]:
    """(key, message) of each enabled backend that cannot record this job, in config order."""
    found = []
    for name in dict.fromkeys(job.tracking.backends):
        key, problem = CHECKS[TrackingBackend(name)]
        message = problem(job)
        if message:
            found.append((key, message))
    return found
