"""boto3 against the gateway: buckets and single objects — what a PUT
stores and a GET/HEAD answers (bytes, ETags, metadata, ranges, conditional
requests, response overrides), copies and deletes. Listing, multipart,
authentication and checksums, and concurrency have files of their own."""

import base64
import datetime
import gzip

from conftest import bucket_name, make_client, remove_bucket
from helpers import MIB, expect_error, md5_hex, pattern, plain_http, quoted_md5

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def now():
    return datetime.datetime.now(datetime.timezone.utc)


# --- buckets -----------------------------------------------------------------


def test_list_buckets_shows_a_created_bucket_with_its_creation_date(s3, bucket):
    buckets = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
    assert bucket in buckets, buckets
    created = buckets[bucket]["CreationDate"]
    assert abs((now() - created).total_seconds()) < 600, f"creation date {created} is not about now"


def test_a_bucket_of_curl_written_keys_is_listed_with_its_first_keys_date(s3, master):
    # No CreateBucket: the first path segment of a key written with curl is
    # a bucket to S3, with no marker to date it; it must not show 1970.
    name = bucket_name()
    try:
        status, _ = plain_http(master, "PUT", f"/{name}/only-with-curl", {}, b"x")
        assert status == 201, status
        buckets = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
        assert name in buckets, buckets
        created = buckets[name]["CreationDate"]
        assert abs((now() - created).total_seconds()) < 600, f"creation date {created} is not about now"
    finally:
        plain_http(master, "DELETE", f"/{name}/only-with-curl")


def test_a_curl_written_bucket_with_a_name_aws_reserves_works_like_any_other(s3, master):
    # Reserved names are refused by CreateBucket only; `xn--` ones used to
    # be listed and then refused by every other call.
    name = "xn--" + bucket_name()
    try:
        status, _ = plain_http(master, "PUT", f"/{name}/k", {}, b"reserved")
        assert status == 201, status
        assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"reserved"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["k"]
        s3.delete_object(Bucket=name, Key="k")
        expect_error("InvalidBucketName", 400, s3.create_bucket, Bucket=name)
    finally:
        plain_http(master, "DELETE", f"/{name}/k")


def test_list_buckets_honours_prefix_max_buckets_and_bucket_region(s3):
    names = sorted(bucket_name() for _ in range(3))
    try:
        for name in names:
            s3.create_bucket(Bucket=name)
        got = [b["Name"] for b in s3.list_buckets(Prefix=names[0])["Buckets"]]
        assert got == [names[0]], got
        page = s3.list_buckets(Prefix=names[0][:3], MaxBuckets=1)
        assert len(page["Buckets"]) == 1, page
        assert page.get("Prefix") == names[0][:3], page
        # Paging through everything one bucket at a time finds all three.
        seen, token = [], None
        for _ in range(1000):
            kwargs = {"MaxBuckets": 1, **({"ContinuationToken": token} if token else {})}
            page = s3.list_buckets(**kwargs)
            seen += [b["Name"] for b in page["Buckets"]]
            token = page.get("ContinuationToken")
            if not token:
                break
        assert set(names) <= set(seen), (names, seen)
        assert len(seen) == len(set(seen)), f"a bucket listed twice: {seen}"
        assert s3.list_buckets(BucketRegion="eu-west-1")["Buckets"] == []
        assert set(names) <= {b["Name"] for b in s3.list_buckets(BucketRegion="us-east-1")["Buckets"]}
        expect_error("InvalidArgument", 400, s3.list_buckets, MaxBuckets=10001)
    finally:
        for name in names:
            remove_bucket(s3, name)


def test_head_bucket_answers_for_an_existing_bucket_and_404_for_a_missing_one(s3, bucket):
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    expect_error(None, 404, s3.head_bucket, Bucket=bucket_name())


def test_create_bucket_again_keeps_the_bucket_and_its_objects(s3, bucket):
    s3.put_object(Bucket=bucket, Key="kept", Body=b"still here")
    # us-east-1 answers 200 to the owner re-creating a bucket; other regions
    # BucketAlreadyOwnedByYou. Either way nothing in it may be lost.
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "BucketAlreadyOwnedByYou", e.response
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"still here"


def test_create_bucket_rejects_names_that_break_s3_rules(s3):
    reserved = ["xn--punycode", "sthree-bucket", "amzn-s3-demo-bucket", "name-s3alias", "name--ol-s3"]
    for name in ["ab", "UpperCase", "under_score", "192.168.1.1", "-leading-dash", "trailing-dash-", "a" * 64] + reserved:
        expect_error("InvalidBucketName", 400, s3.create_bucket, Bucket=name)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "UpperCase" not in names and "ab" not in names


def test_get_bucket_location_answers_for_a_bucket_and_no_such_bucket_otherwise(s3, bucket):
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    assert location in (None, "", "us-east-1"), location
    expect_error("NoSuchBucket", 404, s3.get_bucket_location, Bucket=bucket_name())


def test_delete_bucket_refuses_a_non_empty_bucket_then_deletes_it_once_empty(s3):
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    try:
        s3.put_object(Bucket=name, Key="dir/file", Body=b"x")
        expect_error("BucketNotEmpty", 409, s3.delete_bucket, Bucket=name)
        assert s3.get_object(Bucket=name, Key="dir/file")["Body"].read() == b"x", "the refused delete lost an object"
        s3.delete_object(Bucket=name, Key="dir/file")
        assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
        expect_error(None, 404, s3.head_bucket, Bucket=name)
        assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        expect_error("NoSuchBucket", 404, s3.delete_bucket, Bucket=name)
    finally:
        remove_bucket(s3, name)


def test_operations_on_a_missing_bucket_answer_no_such_bucket(s3):
    missing = bucket_name()
    expect_error("NoSuchBucket", 404, s3.put_object, Bucket=missing, Key="k", Body=b"v")
    expect_error("NoSuchBucket", 404, s3.get_object, Bucket=missing, Key="k")
    expect_error("NoSuchBucket", 404, s3.list_objects_v2, Bucket=missing)
    expect_error("NoSuchBucket", 404, s3.list_objects, Bucket=missing)
    expect_error("NoSuchBucket", 404, s3.delete_object, Bucket=missing, Key="k")
    expect_error("NoSuchBucket", 404, s3.create_multipart_upload, Bucket=missing, Key="k")
    # The refused PUT did not create the bucket.
    expect_error(None, 404, s3.head_bucket, Bucket=missing)


def test_unsupported_operations_answer_not_implemented(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    expect_error(
        "NotImplemented",
        501,
        s3.put_bucket_versioning,
        Bucket=bucket,
        VersioningConfiguration={"Status": "Enabled"},
    )
    expect_error(
        "NotImplemented",
        501,
        s3.put_object_tagging,
        Bucket=bucket,
        Key="k",
        Tagging={"TagSet": [{"Key": "a", "Value": "b"}]},
    )


# --- put, get, head, delete -----------------------------------------------------


def test_put_then_get_and_head_return_the_bytes_with_the_md5_etag(s3, bucket):
    body = pattern(300_000, 1)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=body)
    assert put["ETag"] == quoted_md5(body)
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == quoted_md5(body)
    assert abs((now() - got["LastModified"]).total_seconds()) < 600
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ContentLength"] == len(body)
    assert head["ETag"] == quoted_md5(body)
    assert head["LastModified"] == got["LastModified"]


def test_put_with_a_matching_content_md5_is_stored_and_a_wrong_one_is_bad_digest(s3, bucket):
    import base64
    import hashlib

    body = b"checked body"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    s3.put_object(Bucket=bucket, Key="good", Body=body, ContentMD5=good)
    assert s3.get_object(Bucket=bucket, Key="good")["Body"].read() == body
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    expect_error("BadDigest", 400, s3.put_object, Bucket=bucket, Key="bad", Body=body, ContentMD5=wrong)
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="bad")


def test_put_over_an_existing_key_replaces_its_value(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first value", ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second, longer value", ContentType="text/csv")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second, longer value"
    assert got["ETag"] == quoted_md5(b"second, longer value")
    assert got["ContentType"] == "text/csv"


def test_conditional_puts_create_only_or_replace_only_a_known_etag(s3, bucket):
    first, second = b"first value", b"second value"
    s3.put_object(Bucket=bucket, Key="c", Body=first, IfNoneMatch="*")
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="c", Body=second, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == first
    stale = '"0123456789abcdef0123456789abcdef"'
    expect_error("PreconditionFailed", 412, s3.put_object, Bucket=bucket, Key="c", Body=second, IfMatch=stale)
    s3.put_object(Bucket=bucket, Key="c", Body=second, IfMatch=quoted_md5(first))
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == second
    # If-Match on a key with no value: NoSuchKey, as S3 answers.
    expect_error("NoSuchKey", 404, s3.put_object, Bucket=bucket, Key="absent", Body=first, IfMatch=quoted_md5(first))
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="absent")


def test_get_and_head_of_a_missing_key_answer_404_no_such_key(s3, bucket):
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="absent")
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="absent")


def test_delete_object_removes_it_and_deleting_a_missing_key_succeeds(s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="gone")["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="gone")
    assert s3.delete_object(Bucket=bucket, Key="never-was")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_zero_byte_objects_and_directory_markers(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert got["ETag"] == f'"{EMPTY_MD5}"'
    s3.put_object(Bucket=bucket, Key="folder/", Body=b"")
    assert s3.head_object(Bucket=bucket, Key="folder/")["ContentLength"] == 0
    expect_error(None, 404, s3.head_object, Bucket=bucket, Key="folder")
    s3.put_object(Bucket=bucket, Key="folder/child", Body=b"c")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="folder/")
    assert [o["Key"] for o in listed["Contents"]] == ["folder/", "folder/child"]
    assert [o["Size"] for o in listed["Contents"]] == [0, 1]
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top.get("CommonPrefixes", [])] == ["folder/"]
    assert [o["Key"] for o in top["Contents"]] == ["empty"]
    # A copy of an empty object is an empty object.
    s3.copy_object(Bucket=bucket, Key="empty-copy", CopySource={"Bucket": bucket, "Key": "empty"})
    assert s3.get_object(Bucket=bucket, Key="empty-copy")["Body"].read() == b""


def test_metadata_round_trips_through_put_head_and_get(s3, bucket):
    body = gzip.compress(b"a,b\n1,2\n" * 100)
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    s3.put_object(
        Bucket=bucket,
        Key="report.csv",
        Body=body,
        ContentType="text/csv; charset=utf-8",
        ContentDisposition='attachment; filename="report.csv"',
        CacheControl="max-age=60, public",
        ContentEncoding="gzip",
        ContentLanguage="de-CH",
        Expires=expires,
        Metadata={"color": "blue", "Mixed-Case": "Value With Spaces", "empty": ""},
    )
    for answer in (
        s3.head_object(Bucket=bucket, Key="report.csv"),
        s3.get_object(Bucket=bucket, Key="report.csv"),
    ):
        headers = answer["ResponseMetadata"]["HTTPHeaders"]
        assert answer["ContentType"] == "text/csv; charset=utf-8"
        assert answer["ContentDisposition"] == 'attachment; filename="report.csv"'
        assert answer["CacheControl"] == "max-age=60, public"
        assert answer["ContentEncoding"] == "gzip"
        assert answer["ContentLanguage"] == "de-CH"
        assert headers["expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"
        assert answer["Metadata"] == {"color": "blue", "mixed-case": "Value With Spaces", "empty": ""}
    # The bytes are stored as sent (the gateway does not decode them).
    assert s3.get_object(Bucket=bucket, Key="report.csv")["Body"].read() == body


def rfc2047(text):
    """A value as S3 sends non-ASCII metadata in a header: an RFC 2047
    encoded word."""
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode() + "?="


def test_non_ascii_metadata_reads_back_rfc_2047_encoded_and_survives_a_copy(s3, bucket):
    # botocore refuses raw non-ASCII metadata: aws-cli and boto3 users send
    # it encoded, the gateway stores the text ("café") and encodes it again
    # on the way out, as S3 does.
    sent = {"name": rfc2047("café"), "other": "plain"}
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", Metadata=sent)
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"})
    for key in ("k", "copy"):
        for answer in (s3.head_object(Bucket=bucket, Key=key), s3.get_object(Bucket=bucket, Key=key)):
            assert answer["Metadata"] == sent, (key, answer["Metadata"])


def test_non_ascii_metadata_written_with_curl_reads_back_and_a_copy_keeps_it(s3, bucket, master):
    disposition = 'attachment; filename="café.txt"'
    status, _ = plain_http(
        master,
        "PUT",
        f"/{bucket}/from-curl.txt",
        {"Content-Disposition": disposition, "X-Amz-Meta-City": "Zürich", "X-Amz-Meta-Plain": "ascii"},
        b"hello",
    )
    assert status == 201, status
    s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "from-curl.txt"})
    for key in ("from-curl.txt", "copy.txt"):
        for answer in (
            s3.head_object(Bucket=bucket, Key=key),
            s3.get_object(Bucket=bucket, Key=key),
        ):
            assert answer["Metadata"] == {"city": rfc2047("Zürich"), "plain": "ascii"}, (key, answer["Metadata"])
            # Other headers carry the stored UTF-8 bytes (http.client reads
            # them as Latin-1).
            got = answer["ContentDisposition"].encode("latin-1").decode("utf-8")
            assert got == disposition, (key, got)
        # The master has the copy's metadata as the original's: nothing lost.
        status, headers = plain_http(master, "HEAD", f"/{bucket}/{key}")
        assert status == 302, status
        assert headers["x-amz-meta-city"] == "Zürich", (key, headers)
        assert headers["content-disposition"] == disposition, (key, headers)


def test_metadata_over_the_size_limit_is_refused(s3, bucket):
    # S3 allows 2 KiB of user metadata; Trove 8 KiB of metadata in all.
    # 16 KiB must be refused, and nothing stored.
    big = {f"m{i}": "v" * 1000 for i in range(16)}
    try:
        s3.put_object(Bucket=bucket, Key="fat", Body=b"x", Metadata=big)
    except s3.exceptions.ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.response
    else:
        raise AssertionError("16 KiB of metadata was accepted")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="fat")


# --- ranges -----------------------------------------------------------------------


def test_range_reads_answer_206_with_content_range(s3, bucket):
    body = pattern(1000, 2)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    cases = [
        ("bytes=0-9", 0, 10),
        ("bytes=990-", 990, 1000),
        ("bytes=-7", 993, 1000),
        ("bytes=995-5000", 995, 1000),
        ("bytes=0-999", 0, 1000),
        # A last position too large for 64 bits: to the end.
        ("bytes=10-99999999999999999999999", 10, 1000),
    ]
    for header, start, end in cases:
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert got["Body"].read() == body[start:end], header
        assert got["ContentLength"] == end - start, header
        assert got["ContentRange"] == f"bytes {start}-{end - 1}/1000", header


def test_head_with_a_range_answers_206_with_the_range_length(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=pattern(1000, 2))
    head = s3.head_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 10
    assert head["ContentRange"] == "bytes 10-19/1000"


def test_unsatisfiable_ranges_answer_invalid_range(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=pattern(1000, 3))
    # The last: a first position too large for 64 bits, past every end.
    # (A last position that large means "to the end": see the range test.)
    for header in ["bytes=1000-", "bytes=5000-6000", "bytes=99999999999999999999999-"]:
        answer = expect_error("InvalidRange", 416, s3.get_object, Bucket=bucket, Key="r", Range=header)
        # RFC 9110: a 416 says how long the representation is.
        assert answer["ResponseMetadata"]["HTTPHeaders"].get("content-range") == "bytes */1000", answer


def test_ranges_rfc_9110_says_to_ignore_answer_the_whole_object(s3, bucket):
    body = pattern(1000, 4)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    for header in ["bytes=5-2", "bytes=0-1,3-4", "bytes=abc", "items=0-1"]:
        # botocore signs the Range header: the answer must still be 200.
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200, header
        assert "ContentRange" not in got, header
        assert got["Body"].read() == body, header
        head = s3.head_object(Bucket=bucket, Key="r", Range=header)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 200, header
        assert head["ContentLength"] == 1000, header
    # A valid range beside them still answers 206.
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=2-5")["Body"].read() == body[2:6]


def test_range_reads_of_a_multi_mib_object_cross_block_boundaries(s3, bucket):
    body = pattern(3 * MIB + 17, 4)
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    for start, end in [(MIB - 5, MIB + 5), (2 * MIB, 3 * MIB + 16), (123_456, 2_345_678)]:
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{end}")
        assert got["Body"].read() == body[start : end + 1]


# --- conditional requests ------------------------------------------------------------


def test_conditional_gets_answer_304_and_412_as_s3_does(s3, bucket):
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="c")
    etag = head["ETag"]
    modified = head["LastModified"]  # the Last-Modified header, to the second
    day = datetime.timedelta(days=1)

    def get(**conditions):
        return s3.get_object(Bucket=bucket, Key="c", **conditions)

    assert get(IfMatch=etag)["Body"].read() == b"conditional"
    expect_error("PreconditionFailed", 412, get, IfMatch='"0123456789abcdef0123456789abcdef"')
    expect_error(None, 304, get, IfNoneMatch=etag)
    assert get(IfNoneMatch='"0123456789abcdef0123456789abcdef"')["Body"].read() == b"conditional"
    # If-Modified-Since the very Last-Modified the server gave: not modified
    # (S3 compares whole seconds).
    expect_error(None, 304, get, IfModifiedSince=modified)
    assert get(IfModifiedSince=modified - day)["Body"].read() == b"conditional"
    expect_error("PreconditionFailed", 412, get, IfUnmodifiedSince=modified - day)
    assert get(IfUnmodifiedSince=modified)["Body"].read() == b"conditional"
    # RFC 7232 / S3: If-Match true wins over If-Unmodified-Since false, and
    # If-None-Match false wins over If-Modified-Since true.
    assert get(IfMatch=etag, IfUnmodifiedSince=modified - day)["Body"].read() == b"conditional"
    expect_error(None, 304, get, IfNoneMatch=etag, IfModifiedSince=modified - day)


def test_conditional_heads_answer_304_and_412(s3, bucket):
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    etag = s3.head_object(Bucket=bucket, Key="c")["ETag"]
    expect_error(None, 304, s3.head_object, Bucket=bucket, Key="c", IfNoneMatch=etag)
    expect_error(None, 412, s3.head_object, Bucket=bucket, Key="c", IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert s3.head_object(Bucket=bucket, Key="c", IfMatch=etag)["ContentLength"] == 11


# --- response overrides -----------------------------------------------------------------


def test_response_content_overrides_set_the_answer_headers(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"override me", ContentType="application/octet-stream")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="text/plain",
        ResponseContentDisposition='attachment; filename="o.txt"',
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
        ResponseExpires=datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    )
    headers = got["ResponseMetadata"]["HTTPHeaders"]
    assert got["Body"].read() == b"override me"
    assert headers["content-type"] == "text/plain"
    assert headers["content-disposition"] == 'attachment; filename="o.txt"'
    assert headers["cache-control"] == "no-cache"
    assert headers["content-language"] == "fr"
    assert headers["content-encoding"] == "identity"
    assert headers["expires"] == "Tue, 06 May 2031 07:08:09 GMT"
    # The stored metadata did not change.
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "application/octet-stream"


# --- copies -------------------------------------------------------------------------------


def put_source(s3, bucket):
    body = pattern(200_000, 5)
    s3.put_object(Bucket=bucket, Key="src", Body=body, ContentType="image/png", Metadata={"origin": "camera"})
    return body


def test_copy_object_within_a_bucket_copies_bytes_and_metadata(s3, bucket):
    body = put_source(s3, bucket)
    result = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert result["CopyObjectResult"]["ETag"] == quoted_md5(body)
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"origin": "camera"}
    # The source is untouched.
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == body


def test_copy_object_to_another_bucket(s3, bucket, other_bucket):
    body = put_source(s3, bucket)
    s3.copy_object(Bucket=other_bucket, Key="a/copy", CopySource=f"{bucket}/src")
    got = s3.get_object(Bucket=other_bucket, Key="a/copy")
    assert got["Body"].read() == body
    assert got["ETag"] == quoted_md5(body)


def test_copy_object_onto_itself_with_replace_changes_only_the_metadata(s3, bucket):
    body = put_source(s3, bucket)
    s3.copy_object(
        Bucket=bucket,
        Key="src",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="image/jpeg",
        Metadata={"edited": "yes"},
    )
    got = s3.get_object(Bucket=bucket, Key="src")
    assert got["Body"].read() == body
    assert got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"edited": "yes"}


def test_copy_object_onto_itself_without_replace_is_invalid_request(s3, bucket):
    body = put_source(s3, bucket)
    expect_error("InvalidRequest", 400, s3.copy_object, Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == body


def test_copy_object_with_replace_to_a_new_key_sets_new_metadata(s3, bucket):
    body = put_source(s3, bucket)
    s3.copy_object(
        Bucket=bucket,
        Key="renamed",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        ContentType="text/plain",
    )
    got = s3.get_object(Bucket=bucket, Key="renamed")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {}


def test_copy_object_if_match_variants(s3, bucket):
    body = put_source(s3, bucket)
    etag = quoted_md5(body)
    other = '"00000000000000000000000000000000"'
    source = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="m1", CopySource=source, CopySourceIfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="m1")["Body"].read() == body
    s3.copy_object(Bucket=bucket, Key="m2", CopySource=source, CopySourceIfNoneMatch=other)
    assert s3.get_object(Bucket=bucket, Key="m2")["Body"].read() == body
    expect_error("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="m3", CopySource=source, CopySourceIfMatch=other)
    expect_error("PreconditionFailed", 412, s3.copy_object, Bucket=bucket, Key="m4", CopySource=source, CopySourceIfNoneMatch=etag)
    for key in ("m3", "m4"):
        expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)


def test_copy_object_from_a_missing_source_is_no_such_key_or_bucket(s3, bucket):
    expect_error("NoSuchKey", 404, s3.copy_object, Bucket=bucket, Key="d", CopySource={"Bucket": bucket, "Key": "absent"})
    expect_error("NoSuchBucket", 404, s3.copy_object, Bucket=bucket, Key="d", CopySource={"Bucket": bucket_name(), "Key": "k"})
    put_source(s3, bucket)
    expect_error("NoSuchBucket", 404, s3.copy_object, Bucket=bucket_name(), Key="d", CopySource={"Bucket": bucket, "Key": "src"})


# --- DeleteObjects ------------------------------------------------------------------------


def keys_in(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_delete_objects_with_the_sdk_default_crc32_deletes_each_key(s3, bucket):
    for k in ("a", "b", "c", "keep"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    result = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "c"}, {"Key": "never-was"}]},
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "b", "c", "never-was"]
    assert result.get("Errors", []) == []
    assert keys_in(s3, bucket) == ["keep"]


def test_delete_objects_with_per_object_conditions_deletes_none_of_those(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="kept", Body=b"1")
    s3.put_object(Bucket=bucket, Key="gone", Body=b"2")
    result = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "kept", "ETag": put["ETag"]}, {"Key": "gone"}]}
    )
    assert [d["Key"] for d in result.get("Deleted", [])] == ["gone"]
    assert [(e["Key"], e["Code"]) for e in result.get("Errors", [])] == [("kept", "NotImplemented")]
    assert keys_in(s3, bucket) == ["kept"]


def test_delete_objects_quiet_reports_nothing_and_deletes(s3, bucket):
    for k in ("x", "y"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x"}, {"Key": "y"}], "Quiet": True})
    assert result.get("Deleted", []) == []
    assert result.get("Errors", []) == []
    assert keys_in(s3, bucket) == []


def content_md5_instead_of_crc32(md5_of=None):
    """A botocore hook that sends DeleteObjects as older SDKs did: with
    Content-MD5 (of the body, or of `md5_of` to send a wrong one) and no
    x-amz-checksum-* headers."""
    import base64
    import hashlib

    def hook(request, **_):
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        digest = hashlib.md5(body if md5_of is None else md5_of).digest()
        for name in list(request.headers.keys()):
            if name.lower().startswith("x-amz-checksum-") or name.lower() == "x-amz-sdk-checksum-algorithm":
                del request.headers[name]
        request.headers["Content-MD5"] = base64.b64encode(digest).decode()

    return hook


def test_delete_objects_with_content_md5_as_older_sdks_send_it(bucket):
    s3 = make_client()
    s3.meta.events.register("before-sign.s3.DeleteObjects", content_md5_instead_of_crc32())
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "b"]
    assert keys_in(s3, bucket) == []


def test_delete_objects_with_a_wrong_content_md5_deletes_nothing(bucket):
    s3 = make_client()
    s3.meta.events.register("before-sign.s3.DeleteObjects", content_md5_instead_of_crc32(md5_of=b"not the body"))
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    expect_error("BadDigest", 400, s3.delete_objects, Bucket=bucket, Delete={"Objects": [{"Key": "a"}]})
    assert keys_in(s3, bucket) == ["a"]


def test_delete_objects_on_a_missing_bucket_is_no_such_bucket(s3):
    expect_error("NoSuchBucket", 404, s3.delete_objects, Bucket=bucket_name(), Delete={"Objects": [{"Key": "a"}]})


def test_md5_helper_matches_known_value():
    # Guards the suite's own ETag arithmetic.
    assert md5_hex(b"") == EMPTY_MD5


def test_server_side_encryption_is_not_implemented_and_stores_nothing(s3, bucket):
    # Never a success that pretends the bytes are encrypted.
    expect_error("NotImplemented", 501, s3.put_object, Bucket=bucket, Key="sse", Body=b"v", ServerSideEncryption="AES256")
    key = b"k" * 32
    expect_error(
        "NotImplemented", 501, s3.put_object,
        Bucket=bucket, Key="sse-c", Body=b"v", SSECustomerAlgorithm="AES256", SSECustomerKey=key,
    )
    expect_error(
        "NotImplemented", 501, s3.create_multipart_upload,
        Bucket=bucket, Key="sse-mpu", ServerSideEncryption="aws:kms",
    )
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"v")
    expect_error(
        "NotImplemented", 501, s3.get_object,
        Bucket=bucket, Key="plain", SSECustomerAlgorithm="AES256", SSECustomerKey=key,
    )
    expect_error(
        "NotImplemented", 501, s3.copy_object,
        Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "plain"}, ServerSideEncryption="AES256",
    )


def test_object_lock_acls_tags_redirects_and_storage_classes_on_writes_are_refused_and_store_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"v")
    until = now() + datetime.timedelta(days=1)
    grant_all = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'
    cases = [
        ("InvalidRequest", 400, {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}),
        ("InvalidRequest", 400, {"ObjectLockLegalHoldStatus": "ON"}),
        ("NotImplemented", 501, {"ACL": "public-read"}),
        ("NotImplemented", 501, {"GrantRead": grant_all}),
        ("NotImplemented", 501, {"Tagging": "a=b"}),
        ("NotImplemented", 501, {"WebsiteRedirectLocation": "/elsewhere"}),
        ("InvalidStorageClass", 400, {"StorageClass": "GLACIER"}),
        ("InvalidStorageClass", 400, {"StorageClass": "REDUCED_REDUNDANCY"}),
    ]
    for code, status, params in cases:
        expect_error(code, status, s3.put_object, Bucket=bucket, Key="refused", Body=b"v", **params)
        source = {"Bucket": bucket, "Key": "src"}
        expect_error(code, status, s3.copy_object, Bucket=bucket, Key="refused", CopySource=source, **params)
        expect_error(code, status, s3.create_multipart_upload, Bucket=bucket, Key="refused", **params)
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="refused")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    # The canned ACLs that grant nothing more are no-ops (rclone sends
    # `private` on every upload).
    for acl in ("private", "bucket-owner-full-control"):
        s3.put_object(Bucket=bucket, Key=acl, Body=b"v", ACL=acl)
        assert s3.get_object(Bucket=bucket, Key=acl)["Body"].read() == b"v"
    # So is the one storage class there is.
    s3.put_object(Bucket=bucket, Key="standard", Body=b"v", StorageClass="STANDARD")
    assert s3.get_object(Bucket=bucket, Key="standard")["Body"].read() == b"v"


def test_create_bucket_with_object_lock_or_a_granting_acl_is_refused_and_creates_nothing(s3):
    for params in ({"ObjectLockEnabledForBucket": True}, {"ACL": "public-read"}, {"GrantRead": "id=someone"}):
        name = bucket_name()
        expect_error("NotImplemented", 501, s3.create_bucket, Bucket=name, **params)
        expect_error(None, 404, s3.head_bucket, Bucket=name)
    name = bucket_name()
    try:
        s3.create_bucket(Bucket=name, ACL="private")
        assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        remove_bucket(s3, name)


def test_a_version_other_than_null_is_invalid_on_get_and_head(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"v"
    expect_error("InvalidArgument", 400, s3.get_object, Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")
    expect_error(None, 400, s3.head_object, Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")


def test_a_conditional_delete_is_not_implemented_and_deletes_nothing(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    expect_error("NotImplemented", 501, s3.delete_object, Bucket=bucket, Key="k", IfMatch=put["ETag"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_keys_up_to_s3s_limit_of_1024_bytes(s3, bucket):
    longest = "k" * 1024
    s3.put_object(Bucket=bucket, Key=longest, Body=b"x")
    assert s3.get_object(Bucket=bucket, Key=longest)["Body"].read() == b"x"
    expect_error("KeyTooLongError", 400, s3.put_object, Bucket=bucket, Key=longest + "k", Body=b"x")


def test_an_object_stored_without_a_type_reads_as_binary_octet_stream(s3, bucket):
    s3.put_object(Bucket=bucket, Key="untyped", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="untyped")["ContentType"] == "binary/octet-stream"
    assert s3.get_object(Bucket=bucket, Key="untyped")["ContentType"] == "binary/octet-stream"
    got = s3.get_object(Bucket=bucket, Key="untyped", ResponseContentType="text/plain")
    assert got["ContentType"] == "text/plain"
