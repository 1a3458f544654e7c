"""Fixtures of the boto3 suite: clients aimed at the gateway under test, and
fresh buckets that are emptied and removed afterwards.

The gateway is given by the environment (tests/tests/s3.rs sets it when it
runs this suite against a cluster it started):

- S3_ENDPOINT    http://127.0.0.1:PORT
- S3_ACCESS_KEY  an access key the gateway knows
- S3_SECRET_KEY  its secret
- TROVE_MASTER   http://127.0.0.1:PORT of the master behind it (optional:
                 the tests that write or read keys with plain HTTP, as
                 curl would, are skipped without it)
"""

import os
import uuid

import boto3
import pytest
from botocore.config import Config

ENDPOINT = os.environ.get("S3_ENDPOINT", "")
ACCESS_KEY = os.environ.get("S3_ACCESS_KEY", "")
SECRET_KEY = os.environ.get("S3_SECRET_KEY", "")
MASTER = os.environ.get("TROVE_MASTER", "")
REGION = "us-east-1"


def pytest_configure(config):
    if not (ENDPOINT and ACCESS_KEY and SECRET_KEY):
        raise pytest.UsageError(
            "set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY to the gateway under test "
            "(cargo nextest run --release -p trove-tests --test s3 does)"
        )


def make_client(access_key=None, secret_key=None, attempts=1, **config):
    """A boto3 S3 client for the gateway: path-style addressing (what every
    SDK uses for a non-AWS endpoint), SigV4, and by default no retries, so
    that a failure the server answers is seen as it is."""
    cfg = Config(
        region_name=REGION,
        s3={"addressing_style": "path"},
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=32,
        **config,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY if access_key is None else access_key,
        aws_secret_access_key=SECRET_KEY if secret_key is None else secret_key,
        config=cfg,
    )


def bucket_name():
    """A valid, unused bucket name."""
    return "t-" + uuid.uuid4().hex[:24]


def remove_bucket(s3, name):
    """Empties and deletes a bucket; errors are ignored (clean-up after a
    test, whose own assertions already said what failed)."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        uploads = s3.list_multipart_uploads(Bucket=name).get("Uploads", [])
        for u in uploads:
            s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        s3.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - best-effort clean-up
        pass


@pytest.fixture(scope="session")
def s3():
    return make_client()


@pytest.fixture
def bucket(s3):
    """A fresh, empty bucket."""
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    yield name
    remove_bucket(s3, name)


@pytest.fixture
def other_bucket(s3):
    """A second fresh bucket (copies between buckets)."""
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    yield name
    remove_bucket(s3, name)


@pytest.fixture(scope="session")
def master():
    """The master's URL, for plain HTTP requests beside the S3 ones."""
    if not MASTER:
        pytest.skip("TROVE_MASTER is not set")
    return MASTER
