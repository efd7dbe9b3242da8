"""A prepare job's config: composed from the recipe, checked with one line per problem before it runs."""

import pytest
from llm_launch.launcher import PROJECT_ROOT
from llm_launch.launcher.validate import validate


def fields(job) -> list[str]:
    findings, _ = validate(job)
    return [p.field for p in findings.problems]


def test_prepare_sample_recipe_is_valid_and_resolves_from_training(job_for):
    from llm_launch.launcher.data_prep import resolve_data_prep

    job = job_for("recipe=prepare_sample")
    assert job.task == "prepare" and fields(job) == []
    prep = resolve_data_prep(job)
    assert prep.seq_len == 256 and prep.seed == job.training.seed
    assert prep.tokenizer_path == job.training.data.tokenizer_path
    assert prep.output.dir.endswith("/out/data")
    assert prep.sources[0].path.endswith("data/sample/corpus/train.jsonl")


def test_every_bad_setting_is_reported_together(job_for, tmp_path):
    job = job_for("recipe=prepare_sample", f"data_prep.sources.0.path={tmp_path}/none.jsonl",
                  "data_prep.sources.0.weight=0", "data_prep.dedup.threshold=1.5",
                  "data_prep.filters.max_duplicate_line_fraction=2", "data_prep.split.valid_fraction=1",
                  "data_prep.filters.blocked_domains=[spam.com]", f"data_prep.tokenizer_path={tmp_path}")
    assert sorted(fields(job)) == sorted([
        "data_prep.sources[0].path", "data_prep.sources[0].weight",
        "data_prep.dedup.threshold", "data_prep.filters.max_duplicate_line_fraction",
        "data_prep.split.valid_fraction", "data_prep.filters.url_field", "data_prep.tokenizer_path"])


def test_a_job_without_sources_is_refused(job_for):
    job = job_for("recipe=prepare_sample", "data_prep.sources=[]")
    assert fields(job) == ["data_prep.sources"]


def test_training_jobs_ignore_the_data_prep_section(job_for):
    assert fields(job_for("data_prep.dedup.threshold=7")) == []


def test_cli_exits_2_with_one_line_per_problem(cli):
    result = cli("recipe=prepare_sample", "data_prep.sources.0.weight=-1", "data_prep.dedup.num_perm=4")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in result.stderr
    assert any("data_prep.sources[0].weight" in e for e in errors)


def test_bad_choices_and_bad_ranges_are_reported_together(cli):
    result = cli("recipe=prepare_sample", "data_prep.sources.0.format=xml", "data_prep.dedup.granularity=sentence",
                 "data_prep.sources.0.weight=-1", "data_prep.dedup.num_perm=4")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 4, result.stderr
    assert any(e.startswith("error: data_prep.sources[0].format: 'xml' is not one of jsonl, parquet, text, html, "
                            "pdf, docx; set ") for e in errors)
    assert any(e.startswith("error: data_prep.dedup.granularity: 'sentence' is not one of document, paragraph")
               for e in errors)
    assert any(e.startswith("error: data_prep.dedup.num_perm: must be at least 16") for e in errors)


def test_a_prepare_job_ignores_the_training_sections(job_for):
    assert fields(job_for("recipe=prepare_sample", "training.micro_batch_size=0", "parallelism.tp=0")) == []


def test_the_plan_of_a_prepare_job_has_inputs_filters_output_and_workers_but_no_training_rows(job_for):
    import json

    from llm_launch.launcher.data_prep import DataPrepPlan

    findings, plan = validate(job_for("recipe=prepare_sample", "data_prep.dedup.near=false"))
    assert findings.problems == [] and isinstance(plan, DataPrepPlan)
    data = json.loads(json.dumps(plan.to_dict()))
    assert not {"memory", "estimates", "max_steps", "global_batch_size", "samples_per_replica"} & set(data)
    (source,) = data["sources"]
    corpus_bytes = (PROJECT_ROOT / "data/sample/corpus/train.jsonl").stat().st_size
    assert (source["name"], source["files"], source["size_bytes"], source["share"]) == ("kjv", 1, corpus_bytes, 1.0)
    assert data["input_bytes"] == corpus_bytes and data["max_shards"] == -(-corpus_bytes // 400000)
    assert "repeated 3-grams <= 50%" in data["filters"] and data["dedup"] == "exact by document"
    assert (data["seq_len"], data["world_size"], data["valid_fraction"]) == (256, 2, 0.05)
    assert data["output_dir"].endswith("/out/data")


def test_the_cli_prints_the_prepare_plan_without_memory_or_cost(cli):
    result = cli("recipe=prepare_sample")
    assert result.returncode == 0, result.stderr
    assert "data preparation" in result.stdout and "input kjv" in result.stdout and "workers" in result.stdout
    assert "memory" not in result.stdout and "USD" not in result.stdout


def test_the_plan_states_what_each_source_contributes_and_warns_when_a_weight_discards_most_of_one(job_for):
    sample = PROJECT_ROOT / "data/sample/corpus"
    two = (f"data_prep.sources=[{{name:big,path:{sample}/train.jsonl,format:jsonl,text_field:text,weight:1}},"
           f"{{name:small,path:{sample}/valid.jsonl,format:jsonl,text_field:text,weight:1}}]")
    findings, plan = validate(job_for("recipe=prepare_sample", two))
    assert findings.problems == []
    big, small = plan.sources
    assert small.expected_use == 1.0  # the scarce source is used whole
    assert big.expected_use == pytest.approx(small.size_bytes / big.size_bytes)  # equal weights: as much as small
    (warning,) = [w for w in findings.warnings if w.startswith("data_prep.sources[0].weight:")]
    assert f"source big contributes only {big.expected_use:.0%} of its input at weight 1" in warning
    assert "takes small whole" in warning

    by_size = (f"data_prep.sources=[{{name:big,path:{sample}/train.jsonl,format:jsonl,text_field:text,weight:20}},"
               f"{{name:small,path:{sample}/valid.jsonl,format:jsonl,text_field:text,weight:1}}]")
    findings, plan = validate(job_for("recipe=prepare_sample", by_size))
    assert all(s.expected_use > 0.5 for s in plan.sources)
    assert not [w for w in findings.warnings if ".weight:" in w]


def test_the_plan_shows_hosts_tasks_stages_and_intermediates(job_for):
    from llm_launch.dataprep.pipeline import build_stages
    from llm_launch.launcher.data_prep import make_data_prep_plan, resolve_data_prep
    from llm_launch.launcher.report import data_prep_table

    job = job_for("recipe=prepare_sample", "data_prep.task_bytes=400000", "data_prep.workers=2")
    plan = make_data_prep_plan(job)
    assert plan.hosts == 1 and plan.tasks == 1  # one input file: a file is never split
    assert plan.work_dir.endswith("/out/data/.work")
    cfg = resolve_data_prep(job)
    assert plan.stages == [s.name for s in build_stages(cfg, "/w", [(0, "f")], 1, "fp")]  # what the job runs
    rows = {row[0]: row[1] for row in zip(*(c._cells for c in data_prep_table(plan).columns), strict=True)}
    assert "filter -> find_duplicates -> minhash_cluster -> dedup_filter" in rows["stages"]
    assert rows["intermediates"] == plan.work_dir and "workers = 2" in rows["workers"]


def test_intermediates_and_inputs_no_worker_can_reach_are_refused_one_line_each(job_for):
    slurm = ("recipe=prepare_sample", "cluster=slurm", "trainer.num_nodes=2", "instance=ml.trn1.32xlarge",
             "cluster.slurm.shared_dir=/fsx")
    job = job_for(*slurm, "data_prep.output.dir=/fsx/data", "data_prep.sources.0.path=/home/me/web.jsonl",
                  "data_prep.output.work_dir=/scratch/work")
    findings, _ = validate(job)
    refused = {p.field: p.message for p in findings.problems if p.field.startswith("data_prep.")}
    assert set(refused) == {"data_prep.sources[0].path", "data_prep.output.work_dir"}
    assert "put it under /fsx (cluster.slurm.shared_dir) or use an s3:// prefix" in refused["data_prep.output.work_dir"]
    ok = job_for(*slurm, "data_prep.output.dir=/fsx/data", "data_prep.sources.0.path=/fsx/web.jsonl",
                 "data_prep.output.work_dir=s3://bucket/work")
    assert not [p for p in validate(ok)[0].problems if p.field.startswith("data_prep.")]
    sagemaker = job_for("recipe=prepare_sample", "cluster=sagemaker", "trainer.num_nodes=2",
                        "instance=ml.trn1.32xlarge", "data_prep.sources=[{name: web, path: /opt/ml/input/data/raw/w.jsonl}]",
                        "data_prep.tokenizer_path=/opt/ml/input/data/tokenizer",
                        "cluster.sagemaker.channels={raw: 's3://b/raw', tokenizer: 's3://b/tok'}")
    (problem,) = [p for p in validate(sagemaker)[0].problems if p.field.startswith("data_prep.")]
    assert problem.field == "data_prep.output.work_dir" and "share no file system" in problem.message
