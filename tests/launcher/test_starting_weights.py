"""Fine-tuning without a pretrained model warns in the plan; the p5 SFT recipe names the weights to set."""

from __future__ import annotations

from llm_launch.launcher.validate import validate

REAL = ["cluster.image=123456789012.dkr.ecr.us-west-2.amazonaws.com/llm-launch:nvidia-0.1.0",
        "cluster.region=us-west-2", "cluster.sagemaker.role_arn=arn:aws:iam::123456789012:role/Trainer",
        "cluster.sagemaker.s3_output_uri=s3://my-bucket/out", "cluster.sagemaker.s3_checkpoint_uri=s3://my-bucket/ck",
        "cluster.sagemaker.s3_code_uri=s3://my-bucket/code", "cluster.sagemaker.channels.train=s3://my-bucket/data",
        "cluster.sagemaker.channels.tokenizer=s3://my-bucket/tok"]


def weight_warnings(findings) -> list[str]:
    return [w for w in findings.warnings if w.startswith("model.pretrained_path")]


def test_sft_without_pretrained_weights_warns(job_for):
    findings, _ = validate(job_for("recipe=llama2_7b_sft_p5_fsdp", "model.pretrained_path=null"))
    assert weight_warnings(findings) == [
        "model.pretrained_path: not set: this fine-tunes randomly initialised weights; set "
        "model.pretrained_path=<Hugging Face model folder> (SageMaker: /opt/ml/input/data/model with "
        "cluster.sagemaker.channels.model=s3://<bucket>/<model prefix>)"]
    findings, _ = validate(job_for("recipe=tiny_llama_sft"))
    assert weight_warnings(findings)


def test_remote_cpt_from_random_weights_warns_but_the_local_default_does_not(job_for):
    findings, _ = validate(job_for("recipe=llama3_8b_cpt_trn1"))
    assert "from random weights" in weight_warnings(findings)[0]
    findings, _ = validate(job_for())
    assert weight_warnings(findings) == []


def test_the_p5_sft_recipe_names_its_weights_and_submit_refuses_the_example(job_for):
    findings, _ = validate(job_for("recipe=llama2_7b_sft_p5_fsdp", "action=submit", *REAL))
    # The example channel cannot be read here (no AWS credentials): its config.json is left to the job.
    (unchecked,) = weight_warnings(findings)
    assert "config.json not checked before the job" in unchecked and "when it starts" in unchecked
    refused = {p.field: p.message for p in findings.problems}
    assert list(refused) == ["cluster.sagemaker.channels.model"]
    assert "documentation example" in refused["cluster.sagemaker.channels.model"]
    findings, _ = validate(job_for("recipe=llama2_7b_sft_p5_fsdp", "action=submit", *REAL,
                                   "cluster.sagemaker.channels.model=s3://my-bucket/models/llama-2-7b-hf"))
    assert findings.problems == []
