"""The schema as Hydra composes it: free-form mappings take keys the way users write them."""

from llm_launch.launcher.compose_errors import COMPOSITION_ERRORS


def test_tags_and_channels_take_a_whole_mapping_or_one_key(job_for):
    job = job_for("cluster=sagemaker", "instance=ml.p5.48xlarge",
                  "cluster.sagemaker.tags={team: ml, cost-center: '1234'}", "cluster.sagemaker.tags.owner=ana", "cluster.sagemaker.channels.extra=s3://bucket-a/extra")
    assert job.cluster.sagemaker.tags == {"team": "ml", "cost-center": "1234", "owner": "ana"}
    assert job.cluster.sagemaker.channels["extra"] == "s3://bucket-a/extra"


def test_typed_sections_still_refuse_unknown_keys(job_for):
    try:
        job_for("cluster=sagemaker", "cluster.sagemaker.tagz={team: ml}")
    except COMPOSITION_ERRORS as exc:
        assert "tagz" in str(exc)
    else:
        raise AssertionError("an unknown key was accepted")
