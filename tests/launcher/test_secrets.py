"""Secrets never reach a file llm-launch writes, nor its output: oc.env is refused, known values are caught."""

import pytest
from llm_launch.launcher.jobfile import write_text_atomic
from llm_launch.launcher.problems import JobProblems
from llm_launch.launcher.secrets import SecretInFile

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz0123456789")


def test_oc_env_in_any_field_is_refused_naming_the_key(job_for, secret_env):
    with pytest.raises(JobProblems) as caught:
        job_for("cluster=sagemaker", "cluster.sagemaker.role_arn=${oc.env:AWS_SECRET_ACCESS_KEY}",
                "+cluster.sagemaker.tags.token=prefix-${oc.env:HF_TOKEN}", "job_name=${oc.env:HOME}")
    lines = [str(p) for p in caught.value.problems]
    assert sorted(line.split(":")[0] for line in lines) == ["cluster.sagemaker.role_arn",
                                                            "cluster.sagemaker.tags.token", "job_name"]
    assert "${oc.env:AWS_SECRET_ACCESS_KEY}" in "".join(lines) and SECRET not in "".join(lines)


def test_a_secret_value_typed_into_the_config_is_refused_without_echoing_it(job_for, secret_env):
    with pytest.raises(JobProblems) as caught:
        job_for("cluster=sagemaker", f"+cluster.sagemaker.tags.key={SECRET}")
    (problem,) = caught.value.problems
    assert str(problem).startswith("cluster.sagemaker.tags.key: holds the value of $AWS_SECRET_ACCESS_KEY")
    assert SECRET not in str(problem)


def test_no_file_holding_a_secret_is_written(tmp_path, secret_env):
    with pytest.raises(SecretInFile, match=r"refusing to write .*launch\.sh: .*\$AWS_SECRET_ACCESS_KEY") as caught:
        write_text_atomic(tmp_path / "launch.sh", f"export KEY={SECRET}\n")
    assert SECRET not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    write_text_atomic(tmp_path / "ok.txt", "nothing secret\n")  # other files are written as before


def test_short_placeholder_values_are_not_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # moto's placeholder appears in ordinary text
    write_text_atomic(tmp_path / "plan.json", '{"note": "testing"}\n')


def test_cli_writes_and_prints_nothing_secret(cli, tmp_path, secret_env):
    result = cli("cluster=sagemaker", "instance=ml.p5.48xlarge", "action=render",
                 "cluster.sagemaker.role_arn=${oc.env:AWS_SECRET_ACCESS_KEY}")
    assert result.returncode == 2
    assert "error: cluster.sagemaker.role_arn: takes its value from the environment" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    out = tmp_path / "out"
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
