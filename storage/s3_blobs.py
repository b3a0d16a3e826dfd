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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from core.s3 import S3Connection
from storage.blobs import BlobBackend, BlobInfo, BlobStoreError, checked_key

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

            config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                            s3={"addressing_style": "path"} if connection.endpoint else {})
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=connection.endpoint or None, region_name=connection.region, config=config,
                aws_access_key_id=connection.access_key_id or None,
                aws_secret_access_key=connection.secret_access_key or None,
                aws_session_token=connection.session_token or None)
        return _clients[key]


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise BlobStoreError(f"{url} names no bucket: write s3://bucket or s3://bucket/prefix.")
    return bucket, prefix.strip("/")


class S3Blobs:
    def __init__(self, url: str, connection: S3Connection | None = None) -> None:
        self.bucket, self.prefix = split_s3_url(url)
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
        """One sentence for what went wrong talking to the bucket."""
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(error, NoCredentialsError):
            return BlobStoreError(f"no credentials for {self.location}: set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY (or a profile boto3 reads)")
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return BlobStoreError(f"the bucket {self.bucket} does not exist at {self.connection.where}; create "
                                      "it (autoannotate never creates buckets)")
            if code in _REFUSED:
                return BlobStoreError(f"{self.connection.where} refused the credentials for {self.location} "
                                      f"({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            return BlobStoreError(f"{self.connection.where} answered {code or 'an error'} for {self.location}")
        return BlobStoreError(f"the object store at {self.connection.where} does not answer "
                              f"({type(error).__name__})")

    def _call(self, operation: str, key: str, **arguments: Any) -> Any:
        """One call of the client on `key`: a missing object as KeyError, anything else as one sentence."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, Key=self.object_key(key), **arguments)
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code", "")) in _MISSING_KEY:
                raise KeyError(f"The store {self.location} holds no {key}.") from None
            raise self.failure(error) from None
        except BotoCoreError as error:
            raise self.failure(error) from None

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key)
        except KeyError:
            return False
        return True

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", key, Body=data)

    def put_file(self, key: str, source: Path) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        try:  # above 64 MB in parts: the object appears when the last part is in and the upload is completed
            self.client.upload_file(str(source), self.bucket, self.object_key(key),
                                    Config=TransferConfig(multipart_threshold=64 << 20))
        except (ClientError, BotoCoreError) as error:
            raise self.failure(error) from None
        except Exception as error:  # boto3's transfer manager wraps a ClientError in S3UploadFailedError
            cause = error.__cause__ or error.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                raise self.failure(cause) from None
            raise

    def read(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def open(self, key: str) -> BinaryIO:
        return cast(BinaryIO, self._call("get_object", key)["Body"])

    def delete(self, key: str) -> bool:
        if not self.exists(key):
            return False
        self._call("delete_object", key)
        return True

    def listing(self, prefix: str = "") -> Iterator[BlobInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) + 1:] if self.prefix else item["Key"]
                    yield BlobInfo(key, int(item["Size"]), str(item["ETag"]).strip('"'))
        except (ClientError, BotoCoreError) as error:
            raise self.failure(error) from None


S3 = BlobBackend("s3", "an S3-compatible bucket (AWS S3, MinIO, SeaweedFS), s3://bucket/prefix", S3Blobs)
