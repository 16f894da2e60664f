"""Object storage under the lake root: a local folder, or an S3 bucket and prefix.

Everything the pipeline stores goes through this interface, so the same code runs on a laptop
folder and on S3 (or anything that speaks S3, through AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class StorageError(RuntimeError):
    """A storage operation that failed; the message names the location and what was needed."""


class LakeStorage(ABC):
    """Keys are '/'-separated paths relative to the lake root."""

    @property
    @abstractmethod
    def root_uri(self) -> str: ...

    def uri(self, key: str) -> str:
        return f"{self.root_uri.rstrip('/')}/{key}"

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The object's content, or None when there is none."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def upload(self, local: Path, key: str) -> None: ...

    @abstractmethod
    def download(self, key: str, local: Path) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create the object only if it does not exist; False when it already did."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""

    @abstractmethod
    def has_any(self, prefix: str) -> bool:
        """Whether any key lies under `prefix` (one request, however many there are)."""

    @abstractmethod
    def delta_storage_options(self) -> dict[str, str]:
        """Options for delta-rs; credentials are left to the environment, never copied here."""

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file with the object's content, for readers that only read local files."""
        with tempfile.TemporaryDirectory(prefix="cvm210-") as tmp:
            path = Path(tmp) / key.rsplit("/", 1)[-1]
            self.download(key, path)
            yield path


class LocalStorage(LakeStorage):
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    @property
    def root_uri(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader (or a crash) never sees half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".tmp") as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)

    def upload(self, local: Path, key: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)

    def download(self, key: str, local: Path) -> None:
        shutil.copyfile(self.path(key), local)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def create_exclusive(self, key: str, data: bytes) -> bool:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        return True

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def has_any(self, prefix: str) -> bool:
        base = self.path(prefix)
        return base.is_dir() and any(base.iterdir())

    def delta_storage_options(self) -> dict[str, str]:
        return {}

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        yield self.path(key)


class S3Storage(LakeStorage):
    """S3 through a boto3 client (the Lake resource builds it from the environment)."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client

    @property
    def root_uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read_bytes(self, key: str) -> bytes | None:
        try:
            response = self._call("s3:GetObject", key, self.client.get_object, Key=self._key(key))
        except _Missing:
            return None
        return response["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call("s3:PutObject", key, self.client.put_object, Key=self._key(key), Body=data)

    def upload(self, local: Path, key: str) -> None:
        self._call(
            "s3:PutObject",
            key,
            self.client.upload_file,
            str(local),
            self.bucket,
            self._key(key),
            bucket_arg=False,
        )

    def download(self, key: str, local: Path) -> None:
        self._call(
            "s3:GetObject",
            key,
            self.client.download_file,
            self.bucket,
            self._key(key),
            str(local),
            bucket_arg=False,
        )

    def exists(self, key: str) -> bool:
        try:
            self._call("s3:GetObject", key, self.client.head_object, Key=self._key(key))
        except _Missing:
            return False
        return True

    def create_exclusive(self, key: str, data: bytes) -> bool:
        try:
            self._call(
                "s3:PutObject",
                key,
                self.client.put_object,
                Key=self._key(key),
                Body=data,
                IfNoneMatch="*",
            )
        except _Exists:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call("s3:DeleteObject", key, self.client.delete_object, Key=self._key(key))

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self._key(""))
        pages = self._call(
            "s3:ListBucket",
            prefix,
            lambda **kw: list(paginator.paginate(**kw)),
            Prefix=self._key(prefix),
        )
        for page in pages:
            keys.extend(item["Key"][strip:] for item in page.get("Contents", []))
        return sorted(keys)

    def has_any(self, prefix: str) -> bool:
        page = self._call(
            "s3:ListBucket",
            prefix,
            self.client.list_objects_v2,
            Prefix=self._key(prefix),
            MaxKeys=1,
        )
        return page.get("KeyCount", 0) > 0

    def delta_storage_options(self) -> dict[str, str]:
        options = {}
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["AWS_REGION"] = region
        return options

    def _call(self, permission: str, key: str, method, *args, bucket_arg: bool = True, **kwargs):
        from botocore.exceptions import ClientError

        if bucket_arg:
            kwargs["Bucket"] = self.bucket
        try:
            return method(*args, **kwargs)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise _Missing from error
            if code in {"412", "PreconditionFailed", "ConditionalRequestConflict"}:
                raise _Exists from error
            where = f"s3://{self.bucket}/{self._key(key)}"
            if code in {"403", "AccessDenied", "Forbidden"}:
                raise StorageError(
                    f"access denied to {where}: the credentials need {permission} on"
                    f" bucket {self.bucket!r}, key {self._key(key)!r}"
                ) from None
            raise StorageError(f"{where}: {code or error}") from None


class _Missing(Exception):
    pass


class _Exists(Exception):
    pass


def open_storage(lake_uri: str, s3_client_factory=None) -> LakeStorage:
    """Storage for `lake_uri`: a local folder path, or s3://bucket/prefix."""
    parts = urlsplit(lake_uri)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"CVM210_LAKE_URI={lake_uri!r} names no bucket")
        if s3_client_factory is None:
            raise ValueError("an s3:// lake needs an S3 client")
        return S3Storage(parts.netloc, parts.path, s3_client_factory())
    if parts.scheme in ("", "file"):
        return LocalStorage(Path(parts.path if parts.scheme == "file" else lake_uri))
    raise ValueError(f"CVM210_LAKE_URI={lake_uri!r}: use a local folder or s3://bucket/prefix")
