"""Where checkpoints live: a folder (shared by every node or private to each), or an s3:// prefix.

A folder is written through DCP's FileSystemWriter; a save appears by renaming its .tmp folder.
An S3 prefix is written straight through Amazon's S3 connector for PyTorch (s3torchconnector's DCP
storage writer and reader, https://github.com/awslabs/s3-connector-for-pytorch); S3 has no rename,
so a save is complete once its trainer_state.json exists and `latest` (one PUT) names it.
AWS_ENDPOINT_URL, when set, is honoured by both boto3 and the connector (path-style addressing).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from launcher.jobfile import write_text_atomic

S3_EXTRA_HINT = "pip install 'llm-launch[s3]'"


class LocalFolder:
    """A checkpoint folder on a file system."""

    is_s3 = False

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def read_text(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.root / name, text)

    def names(self) -> list[str]:
        """Checkpoint folders (step_*), saves in progress included."""
        return sorted(p.name for p in self.root.glob("step_*") if p.is_dir())

    def files(self, name: str) -> set[str]:
        folder = self.root / name
        return {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()

    @staticmethod
    def staged_name(name: str) -> str:
        """Where a save is written before it appears under name."""
        return f"{name}.tmp"

    def staging(self, name: str) -> None:
        """Make the fresh folder the ranks write a save into."""
        tmp = self.root / self.staged_name(name)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

    def publish(self, staged: str, name: str) -> None:
        if (self.root / name).exists():
            shutil.rmtree(self.root / name)
        os.replace(self.root / staged, self.root / name)

    def remove(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)

    def dcp_target(self, name: str) -> dict:
        """Keyword arguments of dcp.save for a checkpoint folder."""
        return {"checkpoint_id": str(self.root / name)}

    def dcp_load_target(self, name: str) -> dict:
        """Keyword arguments of dcp.load for a checkpoint folder."""
        return {"checkpoint_id": str(self.root / name)}

    def storage_reader(self, name: str):
        from torch.distributed.checkpoint import FileSystemReader

        return FileSystemReader(str(self.root / name))

    def write_bytes(self, name: str, data: bytes) -> None:
        (self.root / name).write_bytes(data)

    def read_bytes(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None


class S3Prefix:
    """A checkpoint prefix in S3 (s3://bucket/prefix)."""

    is_s3 = True

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

    @staticmethod
    def staged_name(name: str) -> str:
        return name

    def staging(self, name: str) -> None:
        self.remove(name)  # the debris of an earlier attempt at this step

    def publish(self, staged: str, name: str) -> None:
        """Nothing to move: the trainer state and then `latest` mark the save complete."""

    def remove(self, name: str) -> None:
        keys = self._keys(f"{name}/")
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self.prefix + k} for k in keys[start:start + 1000]], "Quiet": True})

    def _connector_config(self):
        from s3torchconnector import S3ClientConfig

        return S3ClientConfig(force_path_style=bool(os.environ.get("AWS_ENDPOINT_URL")))

    def dcp_target(self, name: str) -> dict:
        try:
            from s3torchconnector.dcp import S3StorageWriter
        except ImportError:
            raise ImportError(f"an s3:// checkpoint dir needs s3torchconnector; {S3_EXTRA_HINT}") from None
        return {"storage_writer": S3StorageWriter(self.region, self.path(name),
                                                  s3client_config=self._connector_config())}

    def dcp_load_target(self, name: str) -> dict:
        return {"storage_reader": self.storage_reader(name)}

    def storage_reader(self, name: str):
        from s3torchconnector.dcp import S3StorageReader

        return S3StorageReader(self.region, self.path(name), s3client_config=self._connector_config())


def open_store(location: str | Path, region: str = "") -> LocalFolder | S3Prefix:
    """The store of a checkpoint dir: an s3:// URI or a folder."""
    if str(location).startswith("s3://"):
        return S3Prefix(str(location), region or os.environ.get("AWS_REGION") or os.environ.get(
            "AWS_DEFAULT_REGION", ""))
    return LocalFolder(location)
