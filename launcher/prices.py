"""The price of a node-hour: the catalog's dated figure, or the AWS Price List API when asked for.

plan.prices=catalog (the default) reads instance.price_per_hour_usd and says where it came from.
plan.prices=aws asks the AWS Price List API (boto3 `pricing`, GetProducts on AmazonSageMaker) for
the on-demand training price of the instance type in cluster.region; without AWS credentials,
or when the API has no such product, the plan falls back to the catalog and says why. boto3 is
imported only then, so the default plan stays fast.
API: https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from llm_launch.launcher.config.schema import InstanceConfig, JobConfig

PRICING_API_REGION = "us-east-1"
"""One of the regions that serve the Price List API; it prices every region."""


@dataclass(frozen=True)
class Price:
    """USD per node-hour, and where the figure came from."""

    per_node_hour_usd: float | None
    source: str


def catalog_price(instance: InstanceConfig, note: str = "") -> Price:
    """The catalog entry's price, with its date and source."""
    if instance.price_per_hour_usd is None:
        return Price(None, f"catalog: no price for {instance.name}{note}")
    return Price(instance.price_per_hour_usd, f"catalog, read {instance.price_date or 'on an unknown date'} "
                                              f"(conf/instance/{instance.name}.yaml: price_source){note}")


def on_demand_training_usd(products: list[str]) -> float | None:
    """The on-demand hourly USD price of the first training product in a GetProducts answer."""
    for text in products:
        product = json.loads(text)
        usage = product.get("product", {}).get("attributes", {}).get("usagetype", "")
        if "Train" not in usage:
            continue
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dimension in term.get("priceDimensions", {}).values():
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if usd is not None and float(usd) > 0:
                    return float(usd)
    return None


def aws_price(instance: InstanceConfig, region: str, client=None) -> float | None:
    """The SageMaker on-demand training price per instance-hour from the Price List API, or None."""
    if client is None:
        import boto3

        client = boto3.client("pricing", region_name=PRICING_API_REGION)
    filters = [{"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance.sagemaker_type or instance.name},
               {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    products: list[str] = []
    token = None
    while True:
        kwargs = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "FormatVersion": "aws_v1", "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = client.get_products(**kwargs)
        products += page.get("PriceList", [])
        token = page.get("NextToken")
        if not token:
            return on_demand_training_usd(products)


def _has_credentials() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None


def price_of(job: JobConfig, client=None) -> Price:
    """The price the plan uses, per plan.prices."""
    if job.plan.prices != "aws":
        return catalog_price(job.instance)
    if job.instance.accelerator == "cpu":
        return catalog_price(job.instance)
    if client is None and not _has_credentials():
        return catalog_price(job.instance, " (plan.prices=aws: no AWS credentials found, catalog used)")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        usd = aws_price(job.instance, job.cluster.region, client)
    except (BotoCoreError, ClientError) as exc:
        reason = str(exc).splitlines()[0][:120]
        return catalog_price(job.instance, f" (plan.prices=aws failed: {reason}; catalog used)")
    if usd is None:
        return catalog_price(job.instance, f" (AWS Price List API has no training price for {job.instance.name} in "
                                           f"{job.cluster.region}; catalog used)")
    return Price(usd, f"AWS Price List API, SageMaker on-demand training, {job.cluster.region}")
