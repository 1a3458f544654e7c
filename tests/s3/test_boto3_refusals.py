"""boto3 against the gateway: requests that ask for something the gateway
does not do, or must not do, are refused and change nothing: a copy onto a
destination whose condition fails, an append, an x-amz-* header its
signature does not cover, a data-changing operation with a query parameter
it does not take. Client mistakes in a signed streaming upload are 4xx, and
an error answered before an upload's body was read does not garble the next
request on the connection."""

import datetime
import hashlib
import hmac
import http.client
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, ENDPOINT, REGION, SECRET_KEY, make_client
from helpers import expect_error
from test_boto3_auth import http as plain
from test_boto3_auth import presigner


def test_copy_object_honours_if_none_match_and_if_match_on_its_destination(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"the source")
    s3.put_object(Bucket=bucket, Key="precious", Body=b"do not overwrite me")
    src = {"Bucket": bucket, "Key": "src"}
    expect_error("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="precious", CopySource=src, IfNoneMatch="*")
    wrong = '"' + "0" * 32 + '"'
    expect_error("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="precious", CopySource=src, IfMatch=wrong)
    assert s3.get_object(Bucket=bucket, Key="precious")["Body"].read() == b"do not overwrite me"
    # If-Match on a key that does not exist: NoSuchKey, as for PutObject.
    expect_error("NoSuchKey", 404, s3.copy_object, Bucket=bucket, Key="nodest", CopySource=src, IfMatch='"abc"')
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="nodest")
    # Conditions that hold let the copy through.
    s3.copy_object(Bucket=bucket, Key="fresh", CopySource=src, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="fresh")["Body"].read() == b"the source"
    current = s3.head_object(Bucket=bucket, Key="precious")["ETag"]
    s3.copy_object(Bucket=bucket, Key="precious", CopySource=src, IfMatch=current)
    assert s3.get_object(Bucket=bucket, Key="precious")["Body"].read() == b"the source"


def test_an_append_with_write_offset_bytes_is_refused_and_stores_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="log.txt", Body=b"line1\n")
    expect_error("NotImplemented", 501, s3.put_object, Bucket=bucket, Key="log.txt", Body=b"line2\n", WriteOffsetBytes=6)
    expect_error("NotImplemented", 501, s3.put_object, Bucket=bucket, Key="new.txt", Body=b"x", WriteOffsetBytes=0)
    assert s3.get_object(Bucket=bucket, Key="log.txt")["Body"].read() == b"line1\n"
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="new.txt")


def with_headers_after_signing(client, event, headers):
    """`client` adds `headers` to each `event` request once it is signed."""

    def add(request, **_):
        for name, value in headers.items():
            request.headers[name] = value

    client.meta.events.register(f"before-send.s3.{event}", add)
    return client


def test_a_presigned_put_url_with_an_unsigned_copy_source_is_refused(s3, bucket, other_bucket):
    s3.put_object(Bucket=other_bucket, Key="secret", Body=b"top secret")
    url = presigner().generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "upload-here"}, ExpiresIn=60)
    status, _, body = plain("PUT", url, data=b"", headers={"x-amz-copy-source": f"/{other_bucket}/secret"})
    assert status == 403 and b"AccessDenied" in body and b"x-amz-copy-source" in body, body
    status, _, body = plain("PUT", url, data=b"body", headers={"x-amz-meta-owner": "mallory"})
    assert status == 403 and b"x-amz-meta-owner" in body, body
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="upload-here")
    # The URL itself still works, and so does an unsigned payload hash.
    status, _, body = plain("PUT", url, data=b"body", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="upload-here")["Body"].read() == b"body"


def test_an_unsigned_x_amz_header_added_to_a_signed_request_is_refused(s3, bucket, other_bucket):
    s3.put_object(Bucket=other_bucket, Key="secret", Body=b"top secret")
    sneaky = with_headers_after_signing(make_client(), "PutObject", {"x-amz-copy-source": f"/{other_bucket}/secret"})
    response = expect_error("AccessDenied", 403, sneaky.put_object, Bucket=bucket, Key="k", Body=b"")
    assert "not signed: x-amz-copy-source" in response["Error"]["Message"]
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="k")


def with_query(client, event, query):
    """`client` appends `query` to each `event` request's URL before signing."""

    def add(request, **_):
        request.url += ("&" if "?" in request.url else "?") + query

    client.meta.events.register(f"before-sign.s3.{event}", add)
    return client


@pytest.mark.parametrize("query", ["renameObject", "append&position=1", "torrent", "foo=bar", "x-id=RenameObject"])
def test_a_put_object_with_a_query_parameter_it_does_not_take_is_refused(s3, bucket, query):
    odd = with_query(make_client(), "PutObject", query)
    response = expect_error("NotImplemented", 501, odd.put_object, Bucket=bucket, Key="k", Body=b"")
    assert query.split("&")[0].split("=")[0] in response["Error"]["Message"] or "x-id" in response["Error"]["Message"]
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="k")
    # What SDKs append is kept.
    with_query(make_client(), "PutObject", "x-id=PutObject").put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_bucket_and_object_deletes_with_an_unknown_query_parameter_delete_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    expect_error("NotImplemented", 501, with_query(make_client(), "DeleteObject", "foo").delete_object, Bucket=bucket, Key="k")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.delete_object(Bucket=bucket, Key="k")
    expect_error("NotImplemented", 501, with_query(make_client(), "DeleteBucket", "foo").delete_bucket, Bucket=bucket)
    s3.head_bucket(Bucket=bucket)
    expect_error("NotImplemented", 501, with_query(make_client(), "CreateBucket", "foo").create_bucket, Bucket="t-never-made-q")
    expect_error(None, 404, s3.head_bucket, Bucket="t-never-made-q")


def streaming_put(bucket, key, chunks, decoded_len):
    """A PutObject with a SigV4-signed aws-chunked body
    (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, as the Java and Go SDKs send
    over http), announcing `decoded_len` bytes: its status and body."""

    def sha(b):
        return hashlib.sha256(b).hexdigest()

    def mac(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()

    url = urllib.parse.urlsplit(ENDPOINT)
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{date}/{REGION}/s3/aws4_request"
    path = f"/{bucket}/{key}"
    framed = chunks + [b""]
    length = sum(len(f"{len(c):x};chunk-signature={'0' * 64}\r\n") + len(c) + 2 for c in framed)
    headers = {
        "host": url.netloc,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-date": amzdate,
        "x-amz-decoded-content-length": str(decoded_len),
        "content-encoding": "aws-chunked",
        "content-length": str(length),
    }
    signed = sorted(headers)
    canonical = "\n".join(
        ["PUT", path, "", "".join(f"{h}:{headers[h]}\n" for h in signed), ";".join(signed), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"]
    )
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, sha(canonical.encode())])
    k = mac(mac(mac(mac(("AWS4" + SECRET_KEY).encode(), date), REGION), "s3"), "aws4_request")
    seed = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    previous, body = seed, b""
    for c in framed:
        s = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amzdate, scope, previous, sha(b""), sha(c)])
        previous = hmac.new(k, s.encode(), hashlib.sha256).hexdigest()
        body += f"{len(c):x};chunk-signature={previous}\r\n".encode() + c + b"\r\n"
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={';'.join(signed)}, Signature={seed}"
    )
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_signed_stream_whose_decoded_length_is_wrong_is_a_400_and_stores_nothing(s3, bucket):
    chunks = [b"A" * 65536, b"B" * 100]
    status, body = streaming_put(bucket, "good", chunks, 65636)
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="good")["Body"].read() == chunks[0] + chunks[1]
    for name, announced in [("short", 10), ("long", 200000)]:
        status, body = streaming_put(bucket, name, chunks, announced)
        assert status == 400 and b"IncompleteBody" in body, (name, status, body)
        expect_error(None, 404, s3.head_object, Bucket=bucket, Key=name)


def test_errors_answered_before_an_upload_body_do_not_garble_the_next_request(bucket):
    """botocore sends `Expect: 100-continue` with every PutObject; an error
    answered before the body (an invalid key) must not leave the
    connection reading the client's next request as that body. It did, for
    about 1 request in 200: a bounded loop of 6 clients × 40 rounds."""

    def run(i):
        s3 = make_client()
        failures = []
        for j in range(40):
            for key, body in [("..", b"v"), (f"ok{i}-{j}", b"v"), ("a/..", b"v" * 300), (f"ok2-{i}-{j}", b"v" * 300)]:
                try:
                    s3.put_object(Bucket=bucket, Key=key, Body=body)
                    assert key.startswith("ok"), key
                except ClientError as e:
                    if key.startswith("ok"):
                        failures.append((key, e.response["ResponseMetadata"]["HTTPStatusCode"], str(e)))
        return failures

    with ThreadPoolExecutor(6) as pool:
        failures = [f for fs in pool.map(run, range(6)) for f in fs]
    assert not failures, failures


def test_a_put_no_volume_has_room_for_is_507_insufficient_storage(s3, bucket):
    """The master answers 507 when no volume has room: S3 clients get
    `507 InsufficientStorage` saying so (not a 500 with the master's
    message), which SDKs do not retry. A signed PUT announcing 5 TiB + 1
    and sending no body (`Expect: 100-continue`)."""
    import socket

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = urllib.parse.urlsplit(ENDPOINT)
    size = 5 * (1 << 40) + 1
    request = AWSRequest(
        method="PUT",
        url=f"{ENDPOINT}/{bucket}/huge",
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Content-Length": str(size), "Expect": "100-continue"},
    )
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    head = f"PUT /{bucket}/huge HTTP/1.1\r\nHost: {url.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "host")
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall((head + "\r\n").encode())
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
            text = answer.split(b"\r\n\r\n", 1)
            if answer.startswith(b"HTTP/1.1 100") and len(text) == 2:
                answer = text[1]  # the final answer follows the 100 Continue
                continue
            if b"</Error>" in answer:
                break
    assert answer.startswith(b"HTTP/1.1 507"), answer
    assert b"<Code>InsufficientStorage</Code>" in answer and b"no room" in answer, answer
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="huge")
