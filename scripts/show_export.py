"""Print an export's manifest and its first rows, read back from S3 at the given endpoint."""

import json
import sys

import boto3

endpoint, uri = sys.argv[1], sys.argv[2]
bucket, _, prefix = uri.removeprefix("s3://").partition("/")
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="local",
    aws_secret_access_key="local",
)
manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}manifest.json")["Body"].read())
print(f"s3://{bucket}/{prefix}manifest.json")
print(json.dumps(manifest, indent=2))
rows = s3.get_object(Bucket=bucket, Key=manifest["data_key"])["Body"].read().decode().splitlines()
print(f"s3://{bucket}/{manifest['data_key']}: {len(rows)} rows; the first two:")
for row in rows[:2]:
    print(row)
