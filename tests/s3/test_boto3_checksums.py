"""boto3 against the gateway: the checksums new SDKs send (CRC32 by
default; CRC32C, SHA1, SHA256 when asked), in headers and in aws-chunked
trailers. A correct checksum is accepted; a wrong one is refused and
nothing is stored — not a new key, not a replacement, not a part."""

import base64
import hashlib
import zlib

import pytest

from conftest import make_client
from helpers import b64, crc32c, expect_error, pattern

BODY = pattern(100_000, 80)
# S3's answers to a checksum that does not match what arrived.
CHECKSUM_MISMATCH = {"BadDigest", "XAmzContentChecksumMismatch"}


def checksum_header(algorithm, data):
    """The base64 value of x-amz-checksum-<algorithm> for `data`."""
    if algorithm == "CRC32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "CRC32C":
        return b64(crc32c(data).to_bytes(4, "big"))
    if algorithm == "SHA1":
        return b64(hashlib.sha1(data).digest())
    return b64(hashlib.sha256(data).digest())


def headers_of(request):
    """A prepared request's headers: lowercase names, text values."""
    return {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}


def expect_mismatch(call, **params):
    err = expect_error(None, 400, call, **params)
    assert err["Error"]["Code"] in CHECKSUM_MISMATCH, err


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_put_with_a_checksum_the_sdk_computes_is_stored(s3, bucket, algorithm):
    sent = {}
    client = make_client()
    client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.update(headers_of(request))
    )
    answer = client.put_object(Bucket=bucket, Key=algorithm, Body=BODY, ChecksumAlgorithm=algorithm)
    name = f"x-amz-checksum-{algorithm.lower()}"
    assert name in sent, f"the SDK sent no {algorithm} header: {sent}"
    assert answer.get(f"Checksum{algorithm}") == sent[name], f"the answer echoes the checksum: {answer}"
    assert s3.get_object(Bucket=bucket, Key=algorithm)["Body"].read() == BODY


def test_put_with_a_crc32c_checksum_is_stored(s3, bucket):
    s3.put_object(Bucket=bucket, Key="crc32c", Body=BODY, ChecksumCRC32C=checksum_header("CRC32C", BODY))
    assert s3.get_object(Bucket=bucket, Key="crc32c")["Body"].read() == BODY


def test_the_default_crc32_of_botocore_is_sent_and_accepted(s3, bucket):
    sent = {}
    client = make_client()
    client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.update(headers_of(request))
    )
    client.put_object(Bucket=bucket, Key="default", Body=BODY)
    assert sent.get("x-amz-checksum-crc32") == checksum_header("CRC32", BODY), "botocore >= 1.36 sends CRC32 by default"
    assert s3.get_object(Bucket=bucket, Key="default")["Body"].read() == BODY


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_a_wrong_checksum_header_is_refused_and_nothing_is_stored(s3, bucket, algorithm):
    wrong = checksum_header(algorithm, b"some other bytes")
    expect_mismatch(s3.put_object, Bucket=bucket, Key="new", Body=BODY, **{f"Checksum{algorithm}": wrong})
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="new")


def test_a_wrong_crc32_on_a_replace_leaves_the_old_value(s3, bucket):
    s3.put_object(Bucket=bucket, Key="kept", Body=b"the old value")
    expect_mismatch(s3.put_object, Bucket=bucket, Key="kept", Body=BODY, ChecksumCRC32=checksum_header("CRC32", b"x"))
    got = s3.get_object(Bucket=bucket, Key="kept")
    assert got["Body"].read() == b"the old value"


def test_a_wrong_crc32_on_an_upload_part_stores_no_part(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    expect_mismatch(
        s3.upload_part,
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        PartNumber=1,
        Body=BODY,
        ChecksumCRC32=checksum_header("CRC32", b"x"),
    )
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid).get("Parts", []) == []


def trailer_client(corrupt=False):
    """A client that sends its checksum in an aws-chunked trailer, as SDKs
    do over HTTPS (botocore uses headers over plain HTTP otherwise); with
    `corrupt`, the trailer's value is replaced by a wrong one after signing.
    Returns the client and the headers of the last request it sent."""
    client = make_client()
    sent = {}

    def use_trailer(params, **_):
        algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
        if algorithm:
            algorithm["in"] = "trailer"

    def record_and_corrupt(request, **_):
        sent.clear()
        sent.update(headers_of(request))
        if corrupt:
            body = request.body.read()
            name = sent["x-amz-trailer"].encode()
            head, _, rest = body.partition(name + b":")
            value, _, tail = rest.partition(b"\r\n")
            wrong = base64.b64encode(bytes(b ^ 0xFF for b in base64.b64decode(value)))
            request.body = head + name + b":" + wrong + b"\r\n" + tail

    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register(f"before-call.s3.{operation}", use_trailer)
        client.meta.events.register(f"before-send.s3.{operation}", record_and_corrupt)
    return client, sent


def test_a_checksum_in_an_aws_chunked_trailer_is_accepted(s3, bucket):
    client, sent = trailer_client()
    answer = client.put_object(Bucket=bucket, Key="trailed", Body=BODY, ChecksumAlgorithm="CRC32")
    assert sent.get("x-amz-trailer") == "x-amz-checksum-crc32", sent
    # As AWS does, the answer names the checksum the trailer carried.
    assert answer.get("ChecksumCRC32") == checksum_header("CRC32", BODY), answer
    assert "aws-chunked" in sent.get("content-encoding", ""), sent
    got = s3.get_object(Bucket=bucket, Key="trailed")
    assert got["Body"].read() == BODY
    assert "aws-chunked" not in got.get("ContentEncoding", ""), "aws-chunked is framing, not the object's encoding"


def test_a_wrong_checksum_in_an_aws_chunked_trailer_stores_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="kept", Body=b"the old value")
    client, sent = trailer_client(corrupt=True)
    for key in ("new", "kept"):
        expect_mismatch(client.put_object, Bucket=bucket, Key=key, Body=BODY, ChecksumAlgorithm="CRC32")
        assert sent.get("x-amz-trailer") == "x-amz-checksum-crc32", sent
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="new")
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"the old value"


def test_a_complete_listing_a_part_checksum_that_is_not_the_parts_is_invalid_part(s3, bucket):
    """The part checksums a Complete lists are compared with those each
    part was uploaded with (AWS answers InvalidPart); a wrong checksum on
    the part itself stores nothing."""
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")["UploadId"]
    body = pattern(1000, 7)
    wrong = b64(b"\1" * 32)
    expect_error(
        "BadDigest", 400, s3.upload_part, Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=body, ChecksumSHA256=wrong
    )
    assert not s3.list_parts(Bucket=bucket, Key="k", UploadId=upload).get("Parts")
    part = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=body, ChecksumAlgorithm="SHA256")
    assert part["ChecksumSHA256"] == b64(hashlib.sha256(body).digest())
    listed = {"PartNumber": 1, "ETag": part["ETag"], "ChecksumSHA256": wrong}
    response = expect_error(
        "InvalidPart", 400, s3.complete_multipart_upload, Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": [listed]}
    )
    assert "SHA256" in response["Error"]["Message"]
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="k")
    listed["ChecksumSHA256"] = part["ChecksumSHA256"]
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload, MultipartUpload={"Parts": [listed]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body
