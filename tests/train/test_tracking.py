"""Experiment tracking against a real local MLflow server (file store, started here on a free port) and W&B in
offline mode: a tiny run records its job, plan, every logged metric and metrics.json; a SageMaker tracking
server ARN goes through the sagemaker-mlflow plugin; missing clients and unreachable servers are one line
before training, or a warning with tracking.required=false."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_launch.launcher.config.schema import JobConfig, TrackingBackend, WandbMode
from llm_launch.train.errors import JobError
from llm_launch.train.tracking import start_trackers, tracking_problems
from ports import free_port

ARN = "arn:aws:sagemaker:us-west-2:111122223333:mlflow-tracking-server/llm-launch-test"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` with a file store, on a free port; its URL. Artifacts go to a folder the client writes
    (as a SageMaker tracking server's go to S3), not through the server."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"file://{root / 'store'}",
         "--no-serve-artifacts", "--default-artifact-root", str(root / "artifacts")],
        stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT, cwd=root,
        env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"})  # MLflow 3 keeps the file store behind this switch
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    import urllib.request

    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


def wandb_records(path: Path) -> dict:
    """history, summary and config of an offline W&B run file: the LevelDB log format (32 KiB blocks of
    CRC, length, type records) after W&B's 7-byte header, each record a wandb_internal.proto Record
    (https://github.com/wandb/wandb/blob/main/wandb/proto/wandb_internal.proto)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, pending, found = path.read_bytes(), 7, b"", {"history": [], "summary": {}, "config": {}}
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):  # FULL or LAST ends a record
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        pending = b""
        which = record.WhichOneof("record_type")
        if which == "history":
            found["history"].append(_items(record.history.item))
        elif which == "summary":
            found["summary"].update(_items(record.summary.update))
        elif which == "run":
            found["config"].update(_items(record.run.config.update))
    return found


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in items}


def _job(tmp_path: Path, *backends: TrackingBackend, uri: str | None = None, required: bool = True) -> JobConfig:
    job = JobConfig(job_name="tracked", output_dir=str(tmp_path))
    job.tracking.backends = list(backends)
    job.tracking.required = required
    job.tracking.mlflow.tracking_uri = uri
    job.tracking.wandb.mode = WandbMode.offline
    return job


def test_a_run_records_job_plan_metrics_and_summary_in_mlflow_and_wandb(mlflow_server, launch, records, tmp_path,
                                                                        monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("WANDB_SILENT", "true")
    result = launch(tmp_path, "trainer.nproc_per_node=1", "training.max_steps=2", "training.checkpoint.every_n_steps=0",
                    "training.seq_len=64", "training.eval_batches=1", "job_name=tracked-run",
                    "tracking.backends=[tensorboard,mlflow,wandb]", f"tracking.mlflow.tracking_uri={mlflow_server}",
                    "tracking.wandb.mode=offline", "tracking.wandb.project=llm-launch-tests")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    logged = records(tmp_path)

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tracked-run")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == json.loads((tmp_path / "mlflow_run.json").read_text())["run_id"]
    assert run.data.params["training.max_steps"] == "2" and run.data.params["model.name"] == "tiny_llama"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, pytest.approx(r["loss"])) for s, r in sorted(logged.items())]
    assert client.get_metric_history(run.info.run_id, "val_loss")
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert run.data.metrics["final/final_loss"] == pytest.approx(summary["final_loss"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"job.yaml", "plan.json", "metrics.json"} <= artifacts
    plan = json.loads(Path(client.download_artifacts(run.info.run_id, "plan.json", str(tmp_path))).read_text())
    assert plan == json.loads((tmp_path / "plan.json").read_text())

    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    wandb_run = wandb_records(next(offline.glob("run-*.wandb")))
    losses = [h["loss"] for h in wandb_run["history"] if "loss" in h]
    assert losses == [pytest.approx(logged[s]["loss"]) for s in (1, 2)]
    assert wandb_run["summary"]["final_loss"] == pytest.approx(summary["final_loss"])
    assert wandb_run["config"]["job"]["training"]["max_steps"] == 2 and wandb_run["config"]["plan"] == plan
    assert (offline / "files" / "metrics.json").is_file()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_sagemaker_tracking_server_arn_goes_through_the_plugin(mlflow_server, tmp_path, monkeypatch):
    """The plugin resolves the ARN and signs each request (SigV4, test credentials); its documented
    SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT sends them to the local server instead of AWS."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", mlflow_server)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    job = _job(tmp_path, TrackingBackend.mlflow, uri=ARN)
    job.tracking.mlflow.experiment = "arn-experiment"
    assert tracking_problems(job) == []
    (tracker,) = start_trackers(job, {"world_size": 2}, tmp_path, open_runs=True)
    tracker.log({"step": 1, "loss": 3.5, "note": "text is left out"}, 1)
    tracker.finish({"final_loss": 3.5})
    experiment = MlflowClient(mlflow_server).get_experiment_by_name("arn-experiment")
    (run,) = MlflowClient(mlflow_server).search_runs([experiment.experiment_id])
    assert run.data.metrics == {"loss": 3.5, "final/final_loss": 3.5}


def test_an_unreachable_server_is_one_line_before_training_or_a_warning(tmp_path, capsys):
    dead = f"http://user:pass@127.0.0.1:{free_port()}"
    job = _job(tmp_path, TrackingBackend.mlflow, uri=dead)
    with pytest.raises(JobError) as caught:
        start_trackers(job, {}, tmp_path, open_runs=True)
    message = str(caught.value)
    assert message.startswith(f"tracking.mlflow.tracking_uri: cannot reach the MLflow tracking server at "
                               f"http://127.0.0.1:{dead.rsplit(':', 1)[1]} (")
    assert "\n" not in message and "pass" not in message and message.endswith("(or set tracking.required=false to "
                                                                              "train without it)")
    job.tracking.required = False
    assert start_trackers(job, {}, tmp_path, open_runs=True) == []
    assert "warning: tracking.mlflow.tracking_uri: cannot reach" in capsys.readouterr().out


def test_a_missing_client_or_key_is_named(tmp_path, monkeypatch, aws):
    from importlib.util import find_spec

    import boto3
    from llm_launch.launcher import tracking_checks

    # as on a machine without the mlflow extra
    monkeypatch.setattr(tracking_checks, "find_spec", lambda name: None if name == "mlflow" else find_spec(name))
    job = _job(tmp_path, TrackingBackend.mlflow, TrackingBackend.wandb, uri="http://127.0.0.1:1")
    job.tracking.wandb.mode = WandbMode.online
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert tracking_problems(job) == [
        ("tracking.mlflow.tracking_uri", "the mlflow client is not installed where the job runs; pip install "
                                         "'llm-launch[mlflow]'"),
        ("tracking.wandb", "no API key: set WANDB_API_KEY in the job's environment or tracking.wandb.api_key_secret "
                           "to a Secrets Manager secret holding it")]
    boto3.client("secretsmanager").create_secret(Name="wandb-key", SecretString='{"api_key": "k' + "0" * 39 + '"}')
    job.tracking.wandb.api_key_secret = "wandb-key"
    assert tracking_checks.wandb_api_key(job) == ("k" + "0" * 39, None)
    job.tracking.wandb.api_key_secret = "no-such-secret"
    assert tracking_checks.wandb_api_key(job)[1].startswith("cannot read the API key from secret no-such-secret (")


@pytest.mark.parametrize("uri", ["/tmp/mlruns", "mlruns", "file:///tmp/mlruns"])
def test_a_folder_store_is_refused_before_training_with_the_fix(tmp_path, monkeypatch, uri):
    """MLflow 3.x raises 'filesystem tracking backend ... maintenance mode' when the run starts; say so first,
    also when the folder comes from MLFLOW_TRACKING_URI where the job runs."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    job = _job(tmp_path, TrackingBackend.mlflow)
    ((key, message),) = tracking_problems(job)
    assert key == "tracking.mlflow.tracking_uri" and "sqlite:///" in message and "MLflow 3 refuses" in message
    with pytest.raises(JobError, match="folder .MLflow file store."):
        start_trackers(job, {}, tmp_path, open_runs=True)


@pytest.mark.system  # a traced or tracked run: over 10 s on 2 cores
def test_a_sqlite_store_records_a_run(tmp_path, monkeypatch):
    """The fix the folder message gives works with the installed mlflow."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # a database store keeps artifacts under ./mlruns of the working folder

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    job = _job(tmp_path, TrackingBackend.mlflow, uri=uri)
    assert tracking_problems(job) == []
    (tracker,) = start_trackers(job, {"world_size": 1}, tmp_path, open_runs=True)
    tracker.log({"step": 1, "loss": 2.5}, 1)
    tracker.finish({"final_loss": 2.5})
    (run,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("tracked").experiment_id])
    assert run.data.metrics["loss"] == 2.5
