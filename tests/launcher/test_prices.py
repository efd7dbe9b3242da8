"""Where the plan's price comes from: the dated catalog entry, or the AWS Price List API when asked.

The Price List API is reached through botocore's Stubber: no AWS account exists here. The
Stubber checks each request against botocore's service model for `pricing`, so a request the
real API would refuse fails the test.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber
from llm_launch.launcher.plan import make_plan
from llm_launch.launcher.prices import on_demand_training_usd, price_of


def _product(usage: str, usd: str) -> str:
    return json.dumps({
        "product": {"attributes": {"usagetype": usage, "instanceName": "ml.p5.48xlarge", "regionCode": "us-west-2"}},
        "terms": {"OnDemand": {"T1": {"priceDimensions": {"D1": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
    })


@pytest.fixture
def pricing_client():
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _expect(stubber, products: list[str], region: str = "us-west-2") -> None:
    stubber.add_response("get_products", {"PriceList": products, "FormatVersion": "aws_v1"}, {
        "ServiceCode": "AmazonSageMaker", "FormatVersion": "aws_v1", "MaxResults": 100,
        "Filters": [{"Type": "TERM_MATCH", "Field": "instanceName", "Value": "ml.p5.48xlarge"},
                    {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]})


def test_catalog_price_names_its_date_and_file(job_for):
    plan = make_plan(job_for("recipe=llama2_7b_sft_p5_fsdp"))
    assert plan.estimates.cost_per_hour_usd == pytest.approx(2 * 113.068)
    assert plan.estimates.price_source.startswith("catalog, read 2026-11-26")
    assert "conf/instance/ml.p5.48xlarge.yaml" in plan.estimates.price_source


def test_aws_price_list_training_price_is_used(job_for, pricing_client):
    client, stubber = pricing_client
    _expect(stubber, [_product("USW2-Host:ml.p5.48xlarge", "120.0"), _product("USW2-Train:ml.p5.48xlarge", "98.5")])
    job = job_for("recipe=llama2_7b_sft_p5_fsdp", "plan.prices=aws", "cluster.region=us-west-2")
    price = price_of(job, client)
    assert price.per_node_hour_usd == 98.5
    assert price.source == "AWS Price List API, SageMaker on-demand training, us-west-2"
    plan = make_plan(job, price=price)
    assert plan.estimates.cost_per_hour_usd == pytest.approx(2 * 98.5)


def test_aws_without_a_training_product_falls_back_to_the_catalog(job_for, pricing_client):
    client, stubber = pricing_client
    _expect(stubber, [_product("USW2-Host:ml.p5.48xlarge", "120.0")])
    job = job_for("recipe=llama2_7b_sft_p5_fsdp", "plan.prices=aws", "cluster.region=us-west-2")
    price = price_of(job, client)
    assert price.per_node_hour_usd == 113.068
    assert "has no training price for ml.p5.48xlarge in us-west-2; catalog used" in price.source


def test_aws_without_credentials_says_so(job_for, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    job = job_for("recipe=llama2_7b_sft_p5_fsdp", "plan.prices=aws")
    price = price_of(job)
    assert price.per_node_hour_usd == 113.068
    assert "no AWS credentials found, catalog used" in price.source


def test_zero_and_missing_prices_are_skipped():
    assert on_demand_training_usd([_product("USE1-Train:ml.p5.48xlarge", "0.0000000000")]) is None
    assert on_demand_training_usd([]) is None
