"""Small helpers shared by the boto3 suite's files."""

import base64
import hashlib
import http.client
import urllib.parse

import pytest
from botocore.exceptions import ClientError

MIB = 1 << 20


def expect_error(code, status, call, *args, **params):
    """Calls `call(*args, **params)`, which must fail with S3 error `code` (None:
    any code, for answers without a body such as HEAD's) and HTTP `status`;
    returns the error response."""
    with pytest.raises(ClientError) as raised:
        call(*args, **params)
    response = raised.value.response
    got_status = response["ResponseMetadata"]["HTTPStatusCode"]
    got_code = response.get("Error", {}).get("Code")
    assert got_status == status, f"expected HTTP {status} {code}, got {got_status} {got_code}: {response}"
    # Every answer names its request, as S3's do (x-amz-request-id), and
    # an error with a body says in words what went wrong.
    assert response["ResponseMetadata"].get("RequestId"), f"no request id: {response}"
    if code is not None:
        assert got_code == code, f"expected {code}, got {got_code}: {response}"
        assert response["Error"].get("Message"), f"{code} came without a message: {response}"
    return response


def plain_http(base, method, path, headers=None, body=None):
    """One plain HTTP request to `base` (no SDK, no redirects followed), as
    curl would send it: header values go out as their UTF-8 bytes. Returns
    the status and the answer's headers as UTF-8 text (http.client reads
    them as Latin-1, byte for byte)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest(method, urllib.parse.quote(path))
        for name, value in (headers or {}).items():
            conn.putheader(name, value.encode("utf-8"))
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        answer.read()
        decoded = {k.lower(): v.encode("latin-1").decode("utf-8") for k, v in answer.getheaders()}
        return answer.status, decoded
    finally:
        conn.close()


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def quoted_md5(data):
    """The ETag S3 gives a value written in one PUT."""
    return f'"{md5_hex(data)}"'


def multipart_etag(parts):
    """The ETag S3 gives a multipart object made of `parts` (bytes each):
    md5 of the concatenated binary md5s, a dash, the number of parts."""
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def pattern(size, seed):
    """`size` deterministic bytes that differ for every seed (sha256 in
    counter mode: fast enough for a few MiB, and no two parts alike)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def b64(digest):
    return base64.b64encode(digest).decode()


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as S3's x-amz-checksum-crc32c. botocore
    computes it only with the awscrt extension, which the suite does not
    install, so the tests send it precomputed."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "the CRC-32C check value"
