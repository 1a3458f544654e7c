"""boto3 against the gateway: authentication. Bad signatures, unknown keys,
unsigned and stale requests are refused with S3's errors and store nothing;
presigned GET and PUT URLs work with a plain HTTP client, and a tampered or
expired one does not."""

import base64
import datetime
import hashlib
import urllib.error
import urllib.request

import botocore.auth
import pytest
import urllib3
from botocore import UNSIGNED

from conftest import ENDPOINT, make_client
from helpers import expect_error, pattern


def http(method, url, data=None, headers=None):
    """A plain HTTP request (no SDK): status, headers and body."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and not request.has_header("Content-type"):
        # urllib would say application/x-www-form-urlencoded.
        request.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_a_wrong_secret_is_signature_does_not_match_and_stores_nothing(s3, bucket):
    bad = make_client(secret_key="not-the-secret")
    expect_error("SignatureDoesNotMatch", 403, bad.list_buckets)
    expect_error("SignatureDoesNotMatch", 403, bad.put_object, Bucket=bucket, Key="k", Body=b"v")
    expect_error("SignatureDoesNotMatch", 403, bad.get_object, Bucket=bucket, Key="k")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="k")


def test_an_unknown_access_key_is_invalid_access_key_id(s3, bucket):
    stranger = make_client(access_key="AKIDONTKNOWYOU000000")
    expect_error("InvalidAccessKeyId", 403, stranger.list_buckets)
    expect_error("InvalidAccessKeyId", 403, stranger.put_object, Bucket=bucket, Key="k", Body=b"v")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="k")


def test_unsigned_requests_are_access_denied(s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret bytes")
    anonymous = make_client(signature_version=UNSIGNED)
    expect_error("AccessDenied", 403, anonymous.list_buckets)
    expect_error("AccessDenied", 403, anonymous.get_object, Bucket=bucket, Key="private")
    expect_error("AccessDenied", 403, anonymous.put_object, Bucket=bucket, Key="new", Body=b"v")
    expect_error("AccessDenied", 403, anonymous.delete_object, Bucket=bucket, Key="private")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="new")
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"secret bytes"


def test_a_plain_unsigned_http_get_gets_access_denied_xml(bucket):
    for url in (f"{ENDPOINT}/", f"{ENDPOINT}/{bucket}", f"{ENDPOINT}/{bucket}/k"):
        status, _, body = http("GET", url)
        assert status == 403, (url, status, body)
        assert b"<Code>AccessDenied</Code>" in body, (url, body)


def test_a_body_that_differs_from_the_signed_one_stores_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="kept", Body=b"original value")
    tamperer = make_client()

    def swap_body(request, **_):
        # After signing: same length, other bytes.
        body = request.body.read() if hasattr(request.body, "read") else request.body
        request.body = b"X" * len(body)

    tamperer.meta.events.register("before-send.s3.PutObject", swap_body)
    for key in ("new", "kept"):
        with pytest.raises(tamperer.exceptions.ClientError) as raised:
            tamperer.put_object(Bucket=bucket, Key=key, Body=b"signed value!!")
        status = raised.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, raised.value.response
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="new")
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"original value"


def test_a_request_signed_an_hour_ago_is_refused(s3, bucket, monkeypatch):
    stale = make_client()
    an_hour_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: an_hour_ago)
    expect_error("RequestTimeTooSkewed", 403, stale.put_object, Bucket=bucket, Key="replayed", Body=b"v")
    monkeypatch.undo()
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="replayed")


def presigner():
    return make_client(signature_version="s3v4")


def test_presigned_get_url_works_with_a_plain_http_client(s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared/file.txt", Body=b"presigned bytes", ContentType="text/plain")
    url = presigner().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared/file.txt"}, ExpiresIn=300)
    status, headers, body = http("GET", url)
    assert status == 200, body
    assert body == b"presigned bytes"
    assert headers["Content-Type"] == "text/plain"


def test_presigned_put_url_stores_the_body(s3, bucket):
    url = presigner().generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up/loaded.bin"}, ExpiresIn=300)
    status, _, body = http("PUT", url, data=b"uploaded through a presigned URL")
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="up/loaded.bin")["Body"].read() == b"uploaded through a presigned URL"


def test_sigv2_presigned_put_urls_with_a_content_type_or_md5_store_the_body(s3, bucket):
    # boto3's default presigner for us-east-1 signs with SigV2, and repeats
    # the signed Content-Type and Content-MD5 in the URL's query.
    body = b"uploaded through a SigV2 presigned URL"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    v2 = make_client(signature_version="s3")
    params = {"Bucket": bucket, "Key": "v2/typed.txt", "ContentType": "text/plain", "ContentMD5": md5}
    url = v2.generate_presigned_url("put_object", Params=params, ExpiresIn=300)
    assert "AWSAccessKeyId=" in url and "content-type=" in url.lower(), url
    status, _, answer = http("PUT", url, data=body, headers={"Content-Type": "text/plain", "Content-MD5": md5})
    assert status == 200, answer
    got = s3.get_object(Bucket=bucket, Key="v2/typed.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    # The signature covers the headers: another Content-Type is refused.
    status, _, answer = http("PUT", url, data=b"other", headers={"Content-Type": "text/html", "Content-MD5": md5})
    assert status == 403 and b"SignatureDoesNotMatch" in answer, (status, answer)
    assert s3.get_object(Bucket=bucket, Key="v2/typed.txt")["Body"].read() == body


def test_conditional_dates_in_the_old_http_forms_are_read_and_bad_ones_ignored(s3, bucket):
    # RFC 9110: a recipient reads RFC 850 and asctime dates as well, and
    # ignores a date it cannot read (here in headers the URL does not sign).
    s3.put_object(Bucket=bucket, Key="dated", Body=b"dated")
    modified = s3.head_object(Bucket=bucket, Key="dated")["LastModified"].astimezone(datetime.timezone.utc)
    url = presigner().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dated"}, ExpiresIn=300)
    later = modified + datetime.timedelta(days=1)
    for form in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y", "%a, %d %b %Y %H:%M:%S GMT"]:
        date = later.strftime(form)
        status, _, body = http("GET", url, headers={"If-Modified-Since": date})
        assert status == 304, (date, status, body)
        status, _, body = http("GET", url, headers={"If-Unmodified-Since": date})
        assert status == 200 and body == b"dated", (date, status, body)
    for bad in ["garbage", "yesterday", "Wed, 99 Nov 2026 07:36:14 GMT"]:
        for header in ["If-Modified-Since", "If-Unmodified-Since"]:
            status, _, body = http("GET", url, headers={header: bad})
            assert status == 200 and body == b"dated", (header, bad, status, body)


def test_a_tampered_presigned_url_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="one", Body=b"1")
    s3.put_object(Bucket=bucket, Key="two", Body=b"2")
    url = presigner().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "one"}, ExpiresIn=300)
    other_key = url.replace(f"/{bucket}/one?", f"/{bucket}/two?")
    assert other_key != url
    status, headers, body = http("GET", other_key)
    assert status == 403 and b"SignatureDoesNotMatch" in body, (status, body)
    # Said in words, and with the id the answer's header gives.
    assert b"<Message>The request signature we calculated" in body, body
    request_id = headers["x-amz-request-id"]
    assert request_id and f"<RequestId>{request_id}</RequestId>".encode() in body, (headers, body)
    longer = url.replace("X-Amz-Expires=300", "X-Amz-Expires=600")
    assert longer != url
    status, _, body = http("GET", longer)
    assert status == 403 and b"SignatureDoesNotMatch" in body, (status, body)
    # A presigned GET does not allow a PUT.
    status, _, body = http("PUT", url, data=b"overwrite")
    assert status == 403, (status, body)
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"1"


def test_an_expired_presigned_url_is_refused(s3, bucket, monkeypatch):
    s3.put_object(Bucket=bucket, Key="old", Body=b"x")
    an_hour_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: an_hour_ago)
    url = presigner().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "old"}, ExpiresIn=60)
    monkeypatch.undo()
    status, _, body = http("GET", url)
    assert status == 403 and b"AccessDenied" in body, (status, body)


def test_a_presigned_url_valid_for_more_than_7_days_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    params = {"Bucket": bucket, "Key": "k"}
    week = 7 * 24 * 3600
    url = presigner().generate_presigned_url("get_object", Params=params, ExpiresIn=week + 1)
    status, _, body = http("GET", url)
    assert status == 400 and b"AuthorizationQueryParametersError" in body, (status, body)
    # Also with a Range the gateway ignores, which takes another route.
    status, _, body = http("GET", url, headers={"Range": "bytes=5-2"})
    assert status == 400 and b"AuthorizationQueryParametersError" in body, (status, body)
    url = presigner().generate_presigned_url("get_object", Params=params, ExpiresIn=week)
    assert http("GET", url)[0] == 200


def test_a_presigned_get_with_a_range_to_ignore_answers_the_whole_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    url = presigner().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    status, _, body = http("GET", url, headers={"Range": "bytes=5-2"})
    assert (status, body) == (200, b"0123456789")


def test_browser_form_uploads_are_refused_and_store_nothing(s3, bucket):
    # POST Object: s3s would read the whole file into memory and cannot
    # give the key its ${filename}, so the gateway says NotImplemented.
    post = presigner().generate_presigned_post(bucket, "uploads/${filename}", ExpiresIn=300)
    fields = dict(post["fields"])
    fields["file"] = ("cat.jpg", pattern(1000, 7), "image/jpeg")
    body, content_type = urllib3.encode_multipart_formdata(fields)
    status, _, text = http("POST", post["url"], data=body, headers={"Content-Type": content_type})
    assert status == 501 and b"NotImplemented" in text, (status, text)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="uploads/")["KeyCount"] == 0
