"""boto3 against the gateway: multipart uploads. Create, upload (a part
uploaded again replaces it), list parts and uploads, abort, complete with
S3's checks (ascending numbers, gaps allowed, ETags that match, parts but
the last at least 5 MiB) and again with the same answer, UploadPartCopy; the result's ETag is
md5(concatenated part md5s)-N. GetObject and HeadObject with partNumber
answer one part; a CopyObject of a completed object is one part whose ETag
is the md5 of its bytes."""

from conftest import ENDPOINT, bucket_name
from helpers import MIB, expect_error, md5_hex, multipart_etag, pattern, quoted_md5

PART = 5 * MIB


def upload(s3, bucket, key, upload_id, number, body):
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]
    assert etag == quoted_md5(body), f"part {number}'s ETag is not its md5"
    return etag


def complete(s3, bucket, key, upload_id, parts):
    return s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
    )


def uploads_of(s3, bucket):
    return [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_multipart_upload_lists_parts_and_completes_with_the_multipart_etag(s3, bucket):
    key = "mp/object.bin"
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-tar", Metadata={"kind": "archive"})
    uid = created["UploadId"]
    assert uploads_of(s3, bucket) == [(key, uid)]
    parts = [pattern(PART, 10), pattern(PART, 11), pattern(1234, 12)]
    etags = [upload(s3, bucket, key, uid, n + 1, body) for n, body in enumerate(parts)]
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (n + 1, etags[n], len(parts[n])) for n in range(3)
    ]
    # ListParts pages with part-number markers.
    first = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid, MaxParts=2)
    assert first["IsTruncated"] and [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    rest = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid, PartNumberMarker=first["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    # An empty page is not truncated (it would name nowhere to go on from).
    none = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid, MaxParts=0)
    assert not none["IsTruncated"] and not none.get("Parts"), none
    none = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0)
    assert not none["IsTruncated"] and not none.get("Uploads"), none
    # Nothing is visible before Complete.
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)

    done = complete(s3, bucket, key, uid, [(n + 1, e) for n, e in enumerate(etags)])
    assert done["ETag"] == multipart_etag(parts)
    assert done["Location"] == f"{ENDPOINT}/{bucket}/{key}", done
    got = s3.get_object(Bucket=bucket, Key=key)
    body = got["Body"].read()
    assert md5_hex(body) == md5_hex(b"".join(parts)) and len(body) == 2 * PART + 1234
    assert got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "application/x-tar"
    assert got["Metadata"] == {"kind": "archive"}
    assert uploads_of(s3, bucket) == [], "a completed upload is still listed"
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key=key, UploadId=uid)
    # A Complete sent again (its answer lost, the SDK retrying) gets the
    # same answer, as on AWS; with another list it finds no upload.
    again = complete(s3, bucket, key, uid, [(n + 1, e) for n, e in enumerate(etags)])
    assert again["ETag"] == done["ETag"]
    expect_error("NoSuchUpload", 404, complete, s3, bucket, key, uid, [(1, etags[0]), (3, etags[2])])
    expect_error(
        "NoSuchUpload", 404, s3.upload_part, Bucket=bucket, Key=key, UploadId=uid, PartNumber=4, Body=b"late"
    )
    # The parts are nowhere to be seen through S3.
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert all(not b["Name"].startswith(".") for b in s3.list_buckets()["Buckets"])


def test_multipart_part_uploaded_again_replaces_the_first_and_gaps_are_allowed(s3, bucket):
    key = "gaps"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    p9 = pattern(100, 20)
    p4_first, p4 = pattern(PART, 21), pattern(PART + 7, 22)
    p2 = pattern(PART, 23)
    e9 = upload(s3, bucket, key, uid, 9, p9)
    upload(s3, bucket, key, uid, 4, p4_first)
    e2 = upload(s3, bucket, key, uid, 2, p2)
    e4 = upload(s3, bucket, key, uid, 4, p4)
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(2, e2), (4, e4), (9, e9)]
    done = complete(s3, bucket, key, uid, [(2, e2), (4, e4), (9, e9)])
    assert done["ETag"] == multipart_etag([p2, p4, p9])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == p2 + p4 + p9


def test_multipart_complete_refuses_a_wrong_etag_a_missing_part_and_a_bad_order(s3, bucket):
    key = "refused"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    p1, p2, p3 = pattern(PART, 30), pattern(PART, 31), pattern(10, 32)
    e1 = upload(s3, bucket, key, uid, 1, p1)
    e2 = upload(s3, bucket, key, uid, 2, p2)
    e3 = upload(s3, bucket, key, uid, 3, p3)
    wrong = '"' + "0" * 32 + '"'
    expect_error("InvalidPart", 400, complete, s3, bucket, key, uid, [(1, e1), (2, wrong), (3, e3)])
    expect_error("InvalidPart", 400, complete, s3, bucket, key, uid, [(1, e1), (2, e2), (4, e3)])
    expect_error("InvalidPartOrder", 400, complete, s3, bucket, key, uid, [(2, e2), (1, e1), (3, e3)])
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)
    # The upload survived the refusals and completes.
    assert complete(s3, bucket, key, uid, [(1, e1), (2, e2), (3, e3)])["ETag"] == multipart_etag([p1, p2, p3])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == p1 + p2 + p3


def test_multipart_complete_refuses_a_small_part_that_is_not_the_last(s3, bucket):
    key = "small"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    small = pattern(MIB, 40)
    e1 = upload(s3, bucket, key, uid, 1, small)
    e2 = upload(s3, bucket, key, uid, 2, pattern(MIB, 41))
    expect_error("EntityTooSmall", 400, complete, s3, bucket, key, uid, [(1, e1), (2, e2)])
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)
    # One small part alone is the last part: allowed.
    assert complete(s3, bucket, key, uid, [(1, e1)])["ETag"] == multipart_etag([small])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == small


def test_multipart_abort_discards_the_upload(s3, bucket):
    key = "aborted"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    e1 = upload(s3, bucket, key, uid, 1, pattern(1000, 50))
    assert s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert uploads_of(s3, bucket) == []
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key=key, UploadId=uid)
    expect_error("NoSuchUpload", 404, complete, s3, bucket, key, uid, [(1, e1)])
    expect_error("NoSuchUpload", 404, s3.upload_part, Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=b"x")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key=key)


def test_multipart_calls_with_an_unknown_upload_id_are_no_such_upload(s3, bucket):
    bogus = "no-such-upload-id"
    expect_error("NoSuchUpload", 404, s3.upload_part, Bucket=bucket, Key="k", UploadId=bogus, PartNumber=1, Body=b"x")
    expect_error("NoSuchUpload", 404, s3.list_parts, Bucket=bucket, Key="k", UploadId=bogus)
    expect_error("NoSuchUpload", 404, s3.abort_multipart_upload, Bucket=bucket, Key="k", UploadId=bogus)
    expect_error("NoSuchUpload", 404, complete, s3, bucket, "k", bogus, [(1, '"' + "0" * 32 + '"')])


def test_list_multipart_uploads_shows_each_upload_under_its_prefix(s3, bucket):
    ids = {}
    for key in ("logs/a", "logs/b", "other"):
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    assert sorted(uploads_of(s3, bucket)) == sorted(ids.items())
    under = s3.list_multipart_uploads(Bucket=bucket, Prefix="logs/")
    assert sorted(u["Key"] for u in under.get("Uploads", [])) == ["logs/a", "logs/b"]
    # Two uploads of one key are two uploads.
    again = s3.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    assert again != ids["other"]
    assert sorted(u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="other")["Uploads"]) == sorted(
        [ids["other"], again]
    )


def test_upload_part_copy_whole_and_ranged_sources(s3, bucket, other_bucket):
    source = pattern(PART + 100, 60)
    s3.put_object(Bucket=other_bucket, Key="source", Body=source)
    key = "assembled"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def copy_part(number, byte_range=None):
        params = {"CopySourceRange": byte_range} if byte_range else {}
        return s3.upload_part_copy(
            Bucket=bucket,
            Key=key,
            UploadId=uid,
            PartNumber=number,
            CopySource={"Bucket": other_bucket, "Key": "source"},
            **params,
        )["CopyPartResult"]["ETag"]

    whole = copy_part(1)
    assert whole == quoted_md5(source)
    first_5_mib = copy_part(2, f"bytes=0-{PART - 1}")
    assert first_5_mib == quoted_md5(source[:PART])
    small = copy_part(3, "bytes=1000-1999")
    assert small == quoted_md5(source[1000:2000])
    parts = [source, source[:PART], source[1000:2000]]
    done = complete(s3, bucket, key, uid, [(1, whole), (2, first_5_mib), (3, small)])
    assert done["ETag"] == multipart_etag(parts)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)


def test_upload_part_copy_from_a_missing_source_is_no_such_key(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    expect_error(
        "NoSuchKey",
        404,
        s3.upload_part_copy,
        Bucket=bucket,
        Key="k",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "absent"},
    )


def test_create_multipart_upload_on_a_missing_bucket_is_no_such_bucket(s3):
    expect_error("NoSuchBucket", 404, s3.create_multipart_upload, Bucket=bucket_name(), Key="k")


def test_multipart_object_overwrites_an_existing_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"single put")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    part = pattern(3000, 70)
    e1 = upload(s3, bucket, "k", uid, 1, part)
    complete(s3, bucket, "k", uid, [(1, e1)])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == part


def test_multipart_complete_with_if_none_match_creates_only(s3, bucket):
    s3.put_object(Bucket=bucket, Key="taken", Body=b"first")
    part = pattern(3000, 71)
    for key in ("taken", "free"):
        uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        e1 = upload(s3, bucket, key, uid, 1, part)
        parts = {"Parts": [{"PartNumber": 1, "ETag": e1}]}
        done = lambda: s3.complete_multipart_upload(  # noqa: E731
            Bucket=bucket, Key=key, UploadId=uid, MultipartUpload=parts, IfNoneMatch="*"
        )
        if key == "taken":
            expect_error("PreconditionFailed", 412, done)
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first"
        else:
            done()
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == part


def completed(s3, bucket, key, parts):
    """Uploads `parts` (bytes each) as parts 1, 2, … of `key` and completes."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [upload(s3, bucket, key, uid, n + 1, body) for n, body in enumerate(parts)]
    complete(s3, bucket, key, uid, [(n + 1, e) for n, e in enumerate(etags)])


def test_get_and_head_by_part_number_answer_that_part(s3, bucket):
    parts = [pattern(PART, 80), pattern(PART + 7, 81), pattern(1000, 82)]
    completed(s3, bucket, "mp", parts)
    size = sum(len(p) for p in parts)
    start = 0
    for n, body in enumerate(parts, 1):
        byte_range = f"bytes {start}-{start + len(body) - 1}/{size}"
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == body, f"part {n}"
        assert (got["ContentLength"], got["ContentRange"], got["PartsCount"]) == (len(body), byte_range, 3)
        assert got["ETag"] == multipart_etag(parts), "the object's ETag, not the part's"
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert (head["ContentLength"], head["ContentRange"], head["PartsCount"]) == (len(body), byte_range, 3)
        start += len(body)
    expect_error("InvalidPartNumber", 416, s3.get_object, Bucket=bucket, Key="mp", PartNumber=4)
    expect_error(None, 416, s3.head_object, Bucket=bucket, Key="mp", PartNumber=4)
    expect_error("InvalidRequest", 400, s3.get_object, Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-9")
    # Without partNumber it is the whole object, and no part count.
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["Body"].read() == b"".join(parts) and "PartsCount" not in got


def test_part_number_of_an_object_written_in_one_put_is_the_whole_object(s3, bucket):
    body = pattern(1000, 83)
    s3.put_object(Bucket=bucket, Key="single", Body=body)
    got = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == body
    assert (got["ContentLength"], got["ContentRange"]) == (1000, "bytes 0-999/1000")
    assert "PartsCount" not in got
    head = s3.head_object(Bucket=bucket, Key="single", PartNumber=1)
    assert (head["ContentLength"], head["ContentRange"]) == (1000, "bytes 0-999/1000")
    assert "PartsCount" not in head
    expect_error("InvalidPartNumber", 416, s3.get_object, Bucket=bucket, Key="single", PartNumber=2)
    expect_error(None, 416, s3.head_object, Bucket=bucket, Key="single", PartNumber=2)
    # An empty object is one empty part: no range to answer, and the same
    # headers as any other read of it.
    s3.put_object(
        Bucket=bucket, Key="empty", Body=b"", CacheControl="no-cache", ContentDisposition="inline", Metadata={"m": "1"}
    )
    got = s3.get_object(Bucket=bucket, Key="empty", PartNumber=1, ResponseContentType="text/x-asked")
    assert got["Body"].read() == b"" and got["ContentLength"] == 0 and "ContentRange" not in got
    described = (got["CacheControl"], got["ContentDisposition"], got["Metadata"], got["ContentType"])
    assert described == ("no-cache", "inline", {"m": "1"}, "text/x-asked")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="absent", PartNumber=1)


def test_copy_object_of_a_multipart_object_is_one_part_with_the_md5_etag(s3, bucket, other_bucket):
    # S3 gives a copy made in one request a new ETag over its bytes; only a
    # non-multipart source's ETag is the copy's too.
    parts = [pattern(PART, 84), pattern(2000, 85)]
    completed(s3, bucket, "mp", parts)
    whole = b"".join(parts)
    result = s3.copy_object(Bucket=other_bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "mp"})
    assert result["CopyObjectResult"]["ETag"] == quoted_md5(whole)
    assert s3.head_object(Bucket=other_bucket, Key="copy")["ETag"] == quoted_md5(whole)
    got = s3.get_object(Bucket=other_bucket, Key="copy", PartNumber=1)
    assert got["Body"].read() == whole and "PartsCount" not in got
    expect_error("InvalidPartNumber", 416, s3.get_object, Bucket=other_bucket, Key="copy", PartNumber=2)
    # The source keeps its ETag and its parts.
    source = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert (source["ETag"], source["PartsCount"], source["ContentLength"]) == (multipart_etag(parts), 2, 2000)
    # A copy onto itself (new metadata) is a copy like any other.
    s3.copy_object(
        Bucket=bucket, Key="mp", CopySource={"Bucket": bucket, "Key": "mp"}, Metadata={"v": "2"}, MetadataDirective="REPLACE"
    )
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert (head["ETag"], head["Metadata"]) == (quoted_md5(whole), {"v": "2"})


def test_xml_bodies_over_8_mib_are_max_message_length_exceeded_and_change_nothing(s3, bucket):
    # s3s reads these bodies whole; the gateway bounds them at 8 MiB (a
    # Complete of 10,000 parts takes ~1.5 MB) and refuses longer ones
    # with S3's error, not a 500.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big-list")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="big-list", UploadId=upload, PartNumber=1, Body=b"part")
    parts = [{"PartNumber": n, "ETag": "x" * 1000} for n in range(1, 9001)]
    expect_error(
        "MaxMessageLengthExceeded",
        400,
        s3.complete_multipart_upload,
        Bucket=bucket,
        Key="big-list",
        UploadId=upload,
        MultipartUpload={"Parts": parts},
    )
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    s3.put_object(Bucket=bucket, Key="kept", Body=b"v")
    keys = [{"Key": "kept"}] + [{"Key": f"{n:04d}" + "k" * 9500} for n in range(999)]
    expect_error("MaxMessageLengthExceeded", 400, s3.delete_objects, Bucket=bucket, Delete={"Objects": keys})
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"v"


def test_an_xml_body_sent_chunked_without_a_length_is_missing_content_length(s3, bucket):
    # s3s reads such a body whole and then refuses it for its missing
    # length, or answers 500 once it passes 8 MiB; the gateway refuses it
    # at once, whatever its size, and nothing is deleted.
    import http.client
    import urllib.parse

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from conftest import ENDPOINT, REGION

    s3.put_object(Bucket=bucket, Key="kept", Body=b"v")
    url = f"{ENDPOINT}/{bucket}?delete"
    request = AWSRequest(
        method="POST", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Transfer-Encoding": "chunked"}
    )
    SigV4Auth(s3._request_signer._credentials, "s3", REGION).add_auth(request)
    delete_kept = b"<Delete><Object><Key>kept</Key></Object></Delete>"
    for body in (delete_kept, delete_kept + b" " * (9 * MIB)):
        target = urllib.parse.urlsplit(ENDPOINT)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            conn.putrequest("POST", f"/{bucket}?delete", skip_accept_encoding=True)
            for name, value in request.headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            answer = None
            try:
                for start in range(0, len(body), MIB):
                    piece = body[start : start + MIB]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered before the body was read: what this checks
            answer = conn.getresponse()
            text = answer.read()
        finally:
            conn.close()
        assert answer.status == 411, (len(body), answer.status, text)
        assert b"<Code>MissingContentLength</Code>" in text, text
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"v"
