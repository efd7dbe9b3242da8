"""Files of a data input, wherever they are: a local file or folder, or an s3:// object or prefix.

S3 is read through Amazon's S3 connector for PyTorch (s3torchconnector,
https://github.com/awslabs/s3-connector-for-pytorch): its readers are seekable file objects that
fetch bytes as they are read, so a Parquet footer or the first batch of an Arrow file costs a few
ranged GETs and a whole file streams without landing on disk. AWS_ENDPOINT_URL, when set, is the
endpoint (path-style addressing), as for boto3.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO

S3_EXTRA_HINT = "pip install 'llm-launch[s3]'"


class StoreError(ValueError):
    """An input that cannot be listed or read; the message names it and the fix."""


class LocalStore:
    """A local file, or a folder read recursively."""

    def __init__(self, location: str | Path):
        self.location = str(location)
        self.root = Path(location)

    def exists(self) -> bool:
        return self.root.exists()

    def is_file(self) -> bool:
        return self.root.is_file()

    def files(self) -> list[str]:
        """Names of the files, relative to the folder (the file itself: its own name), sorted."""
        if self.root.is_file():
            return [""]
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts))

    def open(self, name: str, random_access: bool = False) -> BinaryIO:
        return (self.root / name if name else self.root).open("rb")

    def where(self, name: str) -> str:
        return str(self.root / name) if name else self.location

    def version(self, name: str) -> str:
        """What changes when the file does: its size and modification time."""
        stat = (self.root / name if name else self.root).stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"


def _s3_client(region: str):
    try:
        from s3torchconnector import S3ClientConfig
        from s3torchconnector._s3client import S3Client
    except ImportError:
        raise StoreError(f"s3:// data is read with s3torchconnector; {S3_EXTRA_HINT}") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    return S3Client(region, endpoint=endpoint, s3client_config=S3ClientConfig(force_path_style=bool(endpoint)))


class S3Store:
    """An s3://bucket/key object, or every object under s3://bucket/prefix/."""

    def __init__(self, uri: str, region: str = ""):
        self.location = uri.rstrip("/")
        self.bucket, _, self.key = self.location.removeprefix("s3://").partition("/")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client = _s3_client(region)
        self._listing: dict | None = None

    def _list(self) -> dict:
        """name -> the connector's ObjectInfo (key, size, etag) of the object itself ('') or of every object
        under the prefix."""
        if self._listing is None:
            found: dict = {}
            try:
                for page in self.client.list_objects(self.bucket, self.key):
                    for item in page.object_info:
                        if item.key == self.key:
                            found[""] = item
                        elif item.key.startswith(f"{self.key}/" if self.key else ""):
                            name = item.key[len(self.key) + 1 if self.key else 0:]
                            if name and not name.endswith("/"):
                                found[name] = item
            except Exception as exc:  # the connector raises its own S3Exception for every AWS failure
                raise StoreError(f"{self.location}: cannot list it ({_first_line(exc)}); check the URI, the "
                                 "credentials and the region") from None
            self._listing = {"": found[""]} if "" in found else found
        return self._listing

    def exists(self) -> bool:
        return bool(self._list())

    def is_file(self) -> bool:
        return "" in self._list()

    def files(self) -> list[str]:
        return sorted(self._list())

    def open(self, name: str, random_access: bool = False) -> BinaryIO:
        """A reader of the object; random_access fetches only the ranges read (a Parquet footer, a row group),
        otherwise the object streams from where reading starts."""
        from s3torchconnector import S3ReaderConstructor

        info = self._list()[name]
        constructor = S3ReaderConstructor.range_based() if random_access else S3ReaderConstructor.sequential()
        return self.client.get_object(self.bucket, info.key, object_info=info, reader_constructor=constructor)

    def where(self, name: str) -> str:
        return f"{self.location}/{name}" if name else self.location

    def version(self, name: str) -> str:
        info = self._list()[name]
        return f"{info.size}:{info.etag}"


class _RangedObject(io.RawIOBase):
    """A seekable reader of one S3 object through boto3 ranged GETs (plan time: no torch, no connector)."""

    def __init__(self, client, bucket: str, key: str, size: int):
        self.client, self.bucket, self.key, self.size, self.position = client, bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size or not len(buffer):
            return 0
        end = min(self.size, self.position + len(buffer)) - 1
        data = self.client.get_object(Bucket=self.bucket, Key=self.key,
                                      Range=f"bytes={self.position}-{end}")["Body"].read()
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


class BotoS3Store(S3Store):
    """The same store read through boto3, for the launcher's plan-time checks (importing the connector
    imports torch, which planning never does)."""

    def __init__(self, uri: str, region: str = ""):
        import boto3

        self.location = uri.rstrip("/")
        self.bucket, _, self.key = self.location.removeprefix("s3://").partition("/")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        session = boto3.session.Session(region_name=region)
        if session.get_credentials() is None:  # the listing would fail the same way; building the client costs more
            from botocore.exceptions import NoCredentialsError

            raise StoreError(f"{self.location}: cannot list it ({_first_line(NoCredentialsError())}); check the URI, "
                             "the credentials and the region")
        self.client = session.client("s3")
        self._listing = None

    def _list(self) -> dict:
        if self._listing is None:
            found: dict = {}
            try:
                pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.key)
                for page in pages:
                    for item in page.get("Contents", []):
                        info = SimpleNamespace(key=item["Key"], size=item["Size"], etag=item.get("ETag", ""))
                        if item["Key"] == self.key:
                            found[""] = info
                        elif item["Key"].startswith(f"{self.key}/" if self.key else ""):
                            name = item["Key"][len(self.key) + 1 if self.key else 0:]
                            if name and not name.endswith("/"):
                                found[name] = info
            except Exception as exc:  # botocore's ClientError, NoCredentialsError, EndpointConnectionError
                raise StoreError(f"{self.location}: cannot list it ({_first_line(exc)}); check the URI, the "
                                 "credentials and the region") from None
            self._listing = {"": found[""]} if "" in found else found
        return self._listing

    def open(self, name: str, random_access: bool = False) -> BinaryIO:
        info = self._list()[name]
        return io.BufferedReader(_RangedObject(self.client, self.bucket, info.key, info.size), buffer_size=1 << 20)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_store(location: str, region: str = "", *, plan_time: bool = False) -> LocalStore | S3Store:
    """The store of a training.data path: an s3:// URI or a local path (plan_time: S3 through boto3)."""
    if location.startswith("s3://"):
        if plan_time:
            try:
                return BotoS3Store(location, region)
            except ImportError:
                raise StoreError(f"checking {location} needs boto3; pip install 'llm-launch[aws]'") from None
        return S3Store(location, region)
    return LocalStore(location)
