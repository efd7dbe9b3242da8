"""An s3:// checkpoint dir (a folder needs nothing here: llm_launch.train.gpu.checkpoint writes it).

An S3 prefix is written straight through Amazon's S3 connector for PyTorch (s3torchconnector's DCP
storage writer and reader, https://github.com/awslabs/s3-connector-for-pytorch); S3 has no rename,
so a save is complete once its trainer_state.json exists and `latest` (one PUT) names it.
AWS_ENDPOINT_URL, when set, is honoured by both boto3 and the connector (path-style addressing).
"""

from __future__ import annotations

import os
from pathlib import Path

S3_EXTRA_HINT = "pip install 'llm-launch[s3]'"


class S3Prefix:
    """A checkpoint prefix in S3 (s3://bucket/prefix)."""

    def __init__(self, uri: str, region: str):
        self.uri = uri.rstrip("/")
        self.bucket, _, prefix = self.uri.removeprefix("s3://").partition("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.region = region
        import boto3

        self.client = boto3.session.Session(region_name=region).client("s3")

    def __str__(self) -> str:
        return self.uri

    def path(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def read_text(self, name: str) -> str | None:
        data = self.read_bytes(name)
        return None if data is None else data.decode("utf-8")

    def write_bytes(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def _keys(self, under: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + under):
            keys += [item["Key"][len(self.prefix):] for item in page.get("Contents", [])]
        return keys

    def names(self) -> list[str]:
        return sorted({key.split("/", 1)[0] for key in self._keys("step_") if "/" in key})

    def files(self, name: str) -> set[str]:
        return {key.split("/", 1)[1] for key in self._keys(f"{name}/")}

    def remove(self, name: str) -> None:
        keys = self._keys(f"{name}/")
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self.prefix + k} for k in keys[start:start + 1000]], "Quiet": True})

    def _connector_config(self):
        from s3torchconnector import S3ClientConfig

        return S3ClientConfig(force_path_style=bool(os.environ.get("AWS_ENDPOINT_URL")))

    def dcp_target(self, name: str) -> dict:
        """Keyword arguments of dcp.save for the checkpoint name."""
        try:
            from s3torchconnector.dcp import S3StorageWriter
        except ImportError:
            raise ImportError(f"an s3:// checkpoint dir needs s3torchconnector; {S3_EXTRA_HINT}") from None
        return {"storage_writer": S3StorageWriter(self.region, self.path(name),
                                                  s3client_config=self._connector_config())}

    def storage_reader(self, name: str):
        from s3torchconnector.dcp import S3StorageReader

        return S3StorageReader(self.region, self.path(name), s3client_config=self._connector_config())


def open_store(location: str | Path, region: str = "") -> Path | S3Prefix:
    """A checkpoint dir: an S3Prefix for an s3:// URI, else the folder."""
    if str(location).startswith("s3://"):
        return S3Prefix(str(location), region or os.environ.get("AWS_REGION") or os.environ.get(
            "AWS_DEFAULT_REGION", ""))
    return Path(location)
