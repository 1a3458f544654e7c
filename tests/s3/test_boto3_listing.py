"""boto3 against the gateway: listings. Pagination over 2,500 keys with and
without a delimiter (v1 Marker/NextMarker, v2 continuation tokens and
StartAfter), every key exactly once; keys with odd characters through
encoding-type=url; ListObjectVersions on an unversioned bucket."""

import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import bucket_name, remove_bucket
from helpers import expect_error, quoted_md5

# 100 keys at the top, 2,400 under ten "directories".
TOP = [f"top-{i:04d}" for i in range(100)]
NESTED = [f"dir{d}/k-{j:04d}" for d in range(10) for j in range(240)]
ALL = sorted(TOP + NESTED)
PREFIXES = [f"dir{d}/" for d in range(10)]


@pytest.fixture(scope="module")
def many(s3):
    """A bucket of 2,500 small objects (each holds its own key)."""
    name = bucket_name()
    s3.create_bucket(Bucket=name)

    def put(key):
        s3.put_object(Bucket=name, Key=key, Body=key.encode())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, ALL))
    yield name
    remove_bucket(s3, name)


def assert_once(seen, expected):
    duplicates = sorted({k for k in seen if seen.count(k) > 1})
    assert not duplicates, f"listed more than once: {duplicates[:10]}"
    assert seen == expected, f"missing {sorted(set(expected) - set(seen))[:10]}, extra {sorted(set(seen) - set(expected))[:10]}"


def test_list_objects_v2_paginator_lists_2500_keys_once_in_order(s3, many):
    keys, pages = [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=many):
        pages += 1
        contents = page.get("Contents", [])
        assert len(contents) <= 1000
        assert page["KeyCount"] == len(contents)
        keys += [o["Key"] for o in contents]
        for o in contents:
            assert o["Size"] == len(o["Key"].encode())
            assert o["ETag"] == quoted_md5(o["Key"].encode())
    assert pages == 3, "1,000 keys a page by default"
    assert_once(keys, ALL)


def test_list_objects_v2_small_pages_with_start_after(s3, many):
    start_after = "dir5/k-0100"
    keys, token = [], None
    while True:
        params = {"Bucket": many, "MaxKeys": 333, "StartAfter": start_after}
        if token:
            params["ContinuationToken"] = token
        page = s3.list_objects_v2(**params)
        assert len(page.get("Contents", [])) <= 333
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            assert "NextContinuationToken" not in page
            break
        token = page["NextContinuationToken"]
    assert_once(keys, [k for k in ALL if k > start_after])


def test_list_objects_v2_with_delimiter_pages_prefixes_and_keys_once(s3, many):
    keys, prefixes, token = [], [], None
    while True:
        params = {"Bucket": many, "Delimiter": "/", "MaxKeys": 7}
        if token:
            params["ContinuationToken"] = token
        page = s3.list_objects_v2(**params)
        contents = [o["Key"] for o in page.get("Contents", [])]
        common = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert len(contents) + len(common) <= 7, "each common prefix counts toward max-keys"
        assert page["KeyCount"] == len(contents) + len(common)
        keys += contents
        prefixes += common
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert_once(prefixes, PREFIXES)
    assert_once(keys, TOP)


def test_list_objects_v2_prefix_and_delimiter_inside_a_directory(s3, many):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=many, Prefix="dir3/", Delimiter="/", PaginationConfig={"PageSize": 100}
    ):
        assert page.get("CommonPrefixes", []) == []
        assert page["Prefix"] == "dir3/"
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert_once(keys, [k for k in NESTED if k.startswith("dir3/")])


def test_list_objects_v2_max_keys_zero_returns_nothing(s3, many):
    page = s3.list_objects_v2(Bucket=many, MaxKeys=0)
    assert page.get("Contents", []) == []
    assert page.get("CommonPrefixes", []) == []
    assert page["KeyCount"] == 0


def test_list_objects_v1_pages_with_marker_list_2500_keys_once(s3, many):
    keys, marker = [], ""
    while True:
        page = s3.list_objects(Bucket=many, MaxKeys=400, Marker=marker)
        contents = [o["Key"] for o in page.get("Contents", [])]
        assert len(contents) <= 400
        keys += contents
        if not page["IsTruncated"]:
            break
        # Without a delimiter NextMarker is optional: the last key is the marker.
        marker = page.get("NextMarker") or contents[-1]
    assert_once(keys, ALL)


def test_list_objects_v1_with_delimiter_gives_next_marker_and_lists_each_prefix_once(s3, many):
    keys, prefixes, marker = [], [], ""
    while True:
        page = s3.list_objects(Bucket=many, Delimiter="/", MaxKeys=7, Marker=marker)
        contents = [o["Key"] for o in page.get("Contents", [])]
        common = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert len(contents) + len(common) <= 7
        keys += contents
        prefixes += common
        if not page["IsTruncated"]:
            break
        assert page.get("NextMarker"), "a truncated v1 listing with a delimiter must give NextMarker"
        marker = page["NextMarker"]
    assert_once(prefixes, PREFIXES)
    assert_once(keys, TOP)


# Keys that need escaping somewhere: in a URL path, in XML, or both; `a`
# beside `a/b`; a trailing slash; unicode.
ODD_KEYS = sorted(
    [
        "a",
        "a/b",
        "sp ace/x y.txt",
        "plus+sign",
        "per%cent",
        "100%25",
        "ünï/日本語.txt",
        "trail/",
        "amp&eq=",
        "q?mark",
        "tilde~",
        "hash#tag",
        "semi;colon",
        "quote's\"",
        "star*",
        "lt<gt>",
        "brackets[1]",
    ]
)


@pytest.fixture
def odd(s3, bucket):
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_odd_keys_read_back_their_own_bytes(s3, odd):
    for key in ODD_KEYS:
        assert s3.get_object(Bucket=odd, Key=key)["Body"].read() == key.encode(), key
        assert s3.head_object(Bucket=odd, Key=key)["ContentLength"] == len(key.encode()), key


def test_odd_keys_list_in_byte_order_through_encoding_type_url(s3, odd):
    # boto3 asks for encoding-type=url and decodes the answer itself: keys
    # come back as written only if the server encoded them.
    expected = sorted(ODD_KEYS, key=lambda k: k.encode())
    v2 = s3.list_objects_v2(Bucket=odd)
    assert [o["Key"] for o in v2["Contents"]] == expected
    v1 = s3.list_objects(Bucket=odd)
    assert [o["Key"] for o in v1["Contents"]] == expected


def test_odd_keys_are_percent_encoded_when_asked(s3, odd):
    # Asking explicitly turns botocore's decoding off: the raw answer.
    page = s3.list_objects_v2(Bucket=odd, EncodingType="url")
    assert page.get("EncodingType") == "url"
    raw = [o["Key"] for o in page["Contents"]]
    assert [urllib.parse.unquote_plus(k) for k in raw] == sorted(ODD_KEYS, key=lambda k: k.encode())
    for k in raw:
        assert " " not in k, f"a space was not encoded in {k!r}"
    encoded = dict(zip(sorted(ODD_KEYS, key=lambda k: k.encode()), raw))
    for key in ("sp ace/x y.txt", "plus+sign", "per%cent", "ünï/日本語.txt", "amp&eq="):
        assert encoded[key] != key, f"{key!r} was not encoded"


def test_odd_keys_with_delimiter_roll_up_and_encode_prefixes(s3, odd):
    page = s3.list_objects_v2(Bucket=odd, Delimiter="/")
    prefixes = [p["Prefix"] for p in page["CommonPrefixes"]]
    keys = [o["Key"] for o in page["Contents"]]
    assert prefixes == sorted(["a/", "sp ace/", "ünï/", "trail/"], key=lambda k: k.encode())
    assert "a" in keys and "a/b" not in keys and "trail/" not in keys
    inside = s3.list_objects_v2(Bucket=odd, Prefix="sp ace/", Delimiter="/")
    assert [o["Key"] for o in inside["Contents"]] == ["sp ace/x y.txt"]
    assert inside["Prefix"] == "sp ace/"
    raw = s3.list_objects_v2(Bucket=odd, Prefix="ünï/", Delimiter="/", EncodingType="url")
    assert urllib.parse.unquote_plus(raw["Prefix"]) == "ünï/"
    assert raw["Prefix"] != "ünï/", "Prefix was not encoded"
    assert [urllib.parse.unquote_plus(o["Key"]) for o in raw["Contents"]] == ["ünï/日本語.txt"]
    top = s3.list_objects_v2(Bucket=odd, Delimiter="/", EncodingType="url")
    assert sorted(urllib.parse.unquote_plus(p["Prefix"]) for p in top["CommonPrefixes"]) == sorted(prefixes)
    assert any(p["Prefix"] != urllib.parse.unquote_plus(p["Prefix"]) for p in top["CommonPrefixes"]), "CommonPrefixes were not encoded"


def test_list_object_versions_answers_null_versions(s3, bucket):
    s3.put_object(Bucket=bucket, Key="v1", Body=b"old")
    s3.put_object(Bucket=bucket, Key="v1", Body=b"newer")
    s3.put_object(Bucket=bucket, Key="v2", Body=b"two")
    page = s3.list_object_versions(Bucket=bucket)
    versions = page["Versions"]
    assert [v["Key"] for v in versions] == ["v1", "v2"], "one version per key"
    for v, body in zip(versions, (b"newer", b"two")):
        assert v["VersionId"] == "null"
        assert v["IsLatest"] is True
        assert v["ETag"] == quoted_md5(body)
        assert v["Size"] == len(body)
    assert page.get("DeleteMarkers", []) == []
    first = s3.list_object_versions(Bucket=bucket, MaxKeys=1)
    assert first["IsTruncated"] and [v["Key"] for v in first["Versions"]] == ["v1"]
    rest = s3.list_object_versions(Bucket=bucket, MaxKeys=1, KeyMarker=first["NextKeyMarker"])
    assert [v["Key"] for v in rest["Versions"]] == ["v2"]


def test_delete_with_version_id_null_deletes(s3, bucket):
    for k in ("x", "y"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    s3.delete_object(Bucket=bucket, Key="x", VersionId="null")
    expect_error("NoSuchKey", 404, s3.get_object, Bucket=bucket, Key="x")
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "y", "VersionId": "null"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["y"]
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_a_prefix_ending_in_dot_segments_lists_only_keys_that_start_with_it(s3, bucket):
    # URL parsers collapse a path's `.` and `..` segments: a prefix sent as
    # a path would turn `dir/.` into `dir/` and list (and `aws s3 rm
    # --recursive` delete) all of it.
    for key in ("dir/.env", "dir/.git/config", "dir/a", "dir/b/c", "top"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    page = s3.list_objects_v2(Bucket=bucket, Prefix="dir/.")
    assert [o["Key"] for o in page["Contents"]] == ["dir/.env", "dir/.git/config"]
    rolled = s3.list_objects_v2(Bucket=bucket, Prefix="dir/.", Delimiter="/")
    assert [o["Key"] for o in rolled["Contents"]] == ["dir/.env"]
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["dir/.git/"]
    for prefix in (".", "dir/..", "..", "dir/./a"):
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        assert page["KeyCount"] == 0 and "Contents" not in page, prefix
        assert not page["IsTruncated"], prefix
    v1 = s3.list_objects(Bucket=bucket, Prefix="dir/.")
    assert [o["Key"] for o in v1["Contents"]] == ["dir/.env", "dir/.git/config"]


def test_listing_times_are_whole_seconds_as_head_gives_them(s3, bucket):
    # `aws s3 sync --exact-timestamps` compares a listing's LastModified
    # with what it stored from HEAD/GET: with milliseconds in the listing,
    # every unchanged file looked changed.
    keys = [f"t{i}" for i in range(5)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "t0"})
    assert copied["CopyObjectResult"]["LastModified"].microsecond == 0
    keys.append("copy")
    heads = {k: s3.head_object(Bucket=bucket, Key=k)["LastModified"] for k in keys}
    listings = {
        "v2": s3.list_objects_v2(Bucket=bucket)["Contents"],
        "v1": s3.list_objects(Bucket=bucket)["Contents"],
        "versions": s3.list_object_versions(Bucket=bucket)["Versions"],
    }
    for name, entries in listings.items():
        assert {e["Key"]: e["LastModified"] for e in entries} == heads, name
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")
    part = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["Parts"][0]
    assert part["LastModified"].microsecond == 0, part
    (listed,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert listed["Initiated"].microsecond == 0, listed


def test_v1_and_version_markers_resume_after_a_key_that_ends_in_the_delimiter(s3, bucket):
    # With prefix `a` and delimiter `a/`, `a/` is a key (the delimiter is
    # looked for after the prefix), not a common prefix: paging one entry
    # at a time must not skip `a/x` and `a/y` after it.
    keys = ["a/", "a/x", "a/y", "ab"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    listed, marker = [], ""
    for _ in range(10):
        page = s3.list_objects(Bucket=bucket, Prefix="a", Delimiter="a/", MaxKeys=1, Marker=marker)
        listed += [o["Key"] for o in page.get("Contents", [])]
        assert not page.get("CommonPrefixes"), page.get("CommonPrefixes")
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert listed == keys
    listed, marker = [], ""
    for _ in range(10):
        params = {"KeyMarker": marker, "VersionIdMarker": "null"} if marker else {}
        page = s3.list_object_versions(Bucket=bucket, Prefix="a", Delimiter="a/", MaxKeys=1, **params)
        listed += [v["Key"] for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        marker = page["NextKeyMarker"]
    assert listed == keys
