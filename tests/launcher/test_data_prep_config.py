"""A prepare job's config: composed from the recipe, checked with one line per problem before it runs."""

from launcher.validate import validate


def fields(job) -> list[str]:
    findings, _ = validate(job)
    return [p.field for p in findings.problems]


def test_prepare_sample_recipe_is_valid_and_resolves_from_training(job_for):
    from launcher.data_prep import resolve_data_prep

    job = job_for("recipe=prepare_sample")
    assert job.training.task == "prepare" and fields(job) == []
    prep = resolve_data_prep(job)
    assert prep.seq_len == 256 and prep.seed == job.training.seed
    assert prep.tokenizer_path == job.training.data.tokenizer_path
    assert prep.output.dir.endswith("/out/data")
    assert prep.sources[0].path.endswith("data/sample/corpus/train.jsonl")


def test_every_bad_setting_is_reported_together(job_for, tmp_path):
    job = job_for("recipe=prepare_sample", f"data_prep.sources.0.path={tmp_path}/none.jsonl",
                  "data_prep.sources.0.weight=0", "data_prep.sources.0.format=xml",
                  "data_prep.dedup.threshold=1.5", "data_prep.dedup.granularity=sentence",
                  "data_prep.filters.max_duplicate_line_fraction=2", "data_prep.split.valid_fraction=1",
                  "data_prep.filters.blocked_domains=[spam.com]", f"data_prep.tokenizer_path={tmp_path}")
    assert sorted(fields(job)) == sorted([
        "data_prep.sources[0].path", "data_prep.sources[0].weight", "data_prep.sources[0].format",
        "data_prep.dedup.threshold", "data_prep.dedup.granularity", "data_prep.filters.max_duplicate_line_fraction",
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
