"""Blobs in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, ...): `s3://bucket/prefix/<key>`, through boto3.

boto3 is AWS's own SDK: synchronous (our callers are plain threads), with the standard retry modes, streamed
bodies, multipart uploads and presigned URLs; s3fs would put an asyncio loop and aiobotocore's pinned botocore under
the same calls. An object appears only when its upload completes (a multipart upload too), so a killed upload
leaves nothing a reader sees. The endpoint, region and credentials come from the usual variables:
AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (any S3-compatible server; unset: AWS itself), AWS_REGION or
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (or boto3's other sources: a
profile, an instance role)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from core.s3 import S3Connection
from storage.blobs import BlobBackend, BlobInfo, BlobStoreError, checked_key

T = TypeVar("T")
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}


_clients: dict[tuple[int, S3Connection], Any] = {}
_clients_lock = threading.Lock()


def s3_client(connection: S3Connection) -> Any:
    """One boto3 client per connection and process (clients are thread-safe, not fork-safe)."""
    key = (os.getpid(), connection)
    with _clients_lock:
        if key not in _clients:
            import boto3
            from botocore.config import Config

            # Few retries of its own: an endpoint that does not answer is waited for by `S3Blobs._waiting`.
            config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=30,
                            s3={"addressing_style": "path"} if connection.endpoint else {})
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=connection.endpoint or None, region_name=connection.region, config=config,
                aws_access_key_id=connection.access_key_id or None,
                aws_secret_access_key=connection.secret_access_key or None,
                aws_session_token=connection.session_token or None)
        return _clients[key]


class ObjectChanged(BlobStoreError):
    """An object read by the ETag it was listed with has other bytes now."""


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise BlobStoreError(f"{url} names no bucket: write s3://bucket or s3://bucket/prefix.")
    return bucket, prefix.strip("/")


def pinned_name(key: str, etag: str) -> str:
    """How a batch manifest names an object of a bucket inbox: its key under the prefix and the ETag it was taken
    at (`key#etag=...`; the CLI and the sensor pin alike)."""
    return f"{key}#etag={etag}"


def unpinned(name: str) -> tuple[str, str]:
    """The key and ETag of a `pinned_name`."""
    key, _, etag = name.partition("#etag=")
    return key, etag


@dataclass(frozen=True)
class BucketObject:
    """An object a bucket inbox took, as it was listed (its ETag): a typed reference that only a batch manifest
    the pipeline wrote holds, never a line a URL list can spell."""

    bucket: str
    key: str
    etag: str

    @classmethod
    def pinned(cls, prefix: str, name: str) -> BucketObject:
        """The object a bucket inbox's manifest names: `name` is `key#etag=...`, the key under `prefix`."""
        bucket, root = split_s3_url(prefix)
        key, etag = unpinned(name)
        return cls(bucket, f"{root}/{key}" if root else key, etag)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def source(self) -> str:
        """What its inputs are recorded under: where it is and the bytes it had (`#etag=...`)."""
        return pinned_name(self.location, self.etag)


class S3Blobs:
    def __init__(self, url: str, wait_s: float = 60.0, connection: S3Connection | None = None) -> None:
        self.bucket, self.prefix = split_s3_url(url)
        self.wait_s = wait_s
        self.connection = connection or S3Connection.from_env()
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def client(self) -> Any:
        return s3_client(self.connection)

    def object_key(self, key: str) -> str:
        checked_key(key, self.location)
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def local_path(self, key: str) -> Path | None:
        return None

    def failure(self, error: Exception) -> BlobStoreError:
        """One sentence for what went wrong talking to the bucket, and what to do about it."""
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(error, NoCredentialsError):
            return BlobStoreError(f"no credentials for {self.location}", "set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY (or a profile boto3 reads)")
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return BlobStoreError(f"the bucket {self.bucket} does not exist at {self.connection.where}",
                                      "create it (autoannotate never creates buckets)")
            if code == "PreconditionFailed":
                return ObjectChanged(f"an object of {self.location} changed since it was listed",
                                     "the next run takes it as it is now")
            if code in _REFUSED:
                return BlobStoreError(f"{self.connection.where} refused the credentials for {self.location} "
                                      f"({code})", "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            return BlobStoreError(f"{self.connection.where} answered {code or 'an error'} for {self.location}",
                                  "look at the object store's log")
        return BlobStoreError(f"the object store at {self.connection.where} does not answer "
                              f"({type(error).__name__}) and did not within {self.wait_s:g} s",
                              "start it, or point AWS_ENDPOINT_URL at one that answers")

    def _waiting(self, call: Callable[[], T], key: str | None = None) -> T:
        """`call()`, waited for while the endpoint does not answer (a restart: up to `wait_s`, as a lost catalog
        is); a missing object as KeyError, anything else as one sentence."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            EndpointConnectionError,
            ReadTimeoutError,
        )
        from urllib3.exceptions import ProtocolError

        deadline, delay = time.monotonic() + self.wait_s, 0.2
        while True:
            try:
                return call()
            except ClientError as error:
                if key is not None and str(error.response.get("Error", {}).get("Code", "")) in _MISSING_KEY:
                    raise KeyError(f"The store {self.location} holds no {key}.") from None
                raise self.failure(error) from None
            except (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ProtocolError) as error:
                if time.monotonic() + delay > deadline:
                    raise self.failure(error) from None
                time.sleep(delay)
                delay = min(2 * delay, 2.0)
            except BotoCoreError as error:
                raise self.failure(error) from None

    def _call(self, operation: str, key: str, **arguments: Any) -> Any:
        return self._waiting(lambda: getattr(self.client, operation)(Bucket=self.bucket, Key=self.object_key(key),
                                                                     **arguments), key)

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key)
        except KeyError:
            return False
        return True

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", key, Body=data)

    def put_file(self, key: str, source: Path) -> None:
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig

        def upload() -> None:  # above 64 MB in parts: the object appears when the upload is completed
            try:
                self.client.upload_file(str(source), self.bucket, self.object_key(key),
                                        Config=TransferConfig(multipart_threshold=64 << 20))
            except S3UploadFailedError as error:  # boto3's transfer manager wraps what failed
                raise (error.__cause__ or error.__context__ or error) from None

        self._waiting(upload)

    def read(self, key: str) -> bytes:
        def whole() -> bytes:  # the body is read inside the wait: a server gone mid-body is a failed call
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
            with body:
                return cast(bytes, body.read())

        return self._waiting(whole, key)

    def open(self, key: str, etag: str | None = None) -> BinaryIO:
        """The object's bytes as a stream; with `etag`, only while the object still has it (else ObjectChanged)."""
        return cast(BinaryIO, self._call("get_object", key, **({"IfMatch": etag} if etag else {}))["Body"])

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self._call("delete_object", key)
        return True

    def listing(self, prefix: str = "") -> Iterator[BlobInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix

        def page(token: str | None) -> dict[str, Any]:
            more = {"ContinuationToken": token} if token else {}
            return cast(dict[str, Any], self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, **more))

        token: str | None = None
        while True:
            answer = self._waiting(partial(page, token))
            for item in answer.get("Contents", []):
                key = item["Key"][len(self.prefix) + 1:] if self.prefix else item["Key"]
                yield BlobInfo(key, int(item["Size"]), str(item["ETag"]).strip('"'), item["LastModified"].timestamp())
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                return


S3 = BlobBackend("s3", "an S3-compatible bucket (AWS S3, MinIO, SeaweedFS), s3://bucket/prefix", S3Blobs)
