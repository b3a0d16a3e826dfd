"""Where an S3 API is and who calls it, as the usual AWS_* variables say: what the bucket blob store (boto3) and
a DuckLake's Parquet files in a bucket (DuckDB's httpfs) both connect with."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class S3Connection:
    """Where the S3 API is and who calls it, as the AWS_* variables say."""

    endpoint: str  # "" : AWS's own endpoints
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Connection:
        env = os.environ if environ is None else environ
        return cls(endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL", ""),
                   region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                   access_key_id=env.get("AWS_ACCESS_KEY_ID", ""),
                   secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
                   session_token=env.get("AWS_SESSION_TOKEN", ""))

    @property
    def where(self) -> str:
        return self.endpoint or f"AWS S3 ({self.region})"
