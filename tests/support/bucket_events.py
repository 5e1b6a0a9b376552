"""S3 event notifications as object stores publish them, for tests of the bucket-event producer."""

from __future__ import annotations

import json
from typing import Any


def s3_event(bucket: str, key: str, head: dict[str, Any]) -> bytes:
    """The standard S3 event JSON (as MinIO and Ceph publish it) for one created object."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-01T10:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": key.replace(" ", "+"),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }
    return json.dumps({"Records": [record]}).encode()
