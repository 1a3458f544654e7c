"""boto3 against the gateway: one key replaced over and over by several
writers while readers read it. Every read must be one whole value that some
writer wrote (never a mix, a gap, a 404 or an ETag of another value)."""

import hashlib
import threading

from conftest import make_client
from helpers import md5_hex, pattern

WRITERS = 3
READERS = 3
WRITES_EACH = 8


def value(writer, round_):
    # Distinct lengths as well as bytes, so that a mix of two values cannot
    # pass for either.
    return pattern(256 * 1024 + 1000 * writer + round_, 1000 * writer + round_)


def test_concurrent_replaces_of_one_key_are_read_as_whole_values(bucket):
    key = "hot"
    initial = pattern(100_000, 999)
    possible = {hashlib.sha256(initial).hexdigest(): initial}
    for w in range(WRITERS):
        for r in range(WRITES_EACH):
            v = value(w, r)
            possible[hashlib.sha256(v).hexdigest()] = v
    # Writers retry as SDKs do (the gateway may ask them to slow down);
    # readers get no retries: every read must succeed the first time.
    writer_client = make_client(attempts=5)
    reader_client = make_client()
    writer_client.put_object(Bucket=bucket, Key=key, Body=initial)

    failures, reads = [], [0]
    lock = threading.Lock()
    writing = threading.Event()
    writing.set()

    def write(w):
        try:
            for r in range(WRITES_EACH):
                writer_client.put_object(Bucket=bucket, Key=key, Body=value(w, r))
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                failures.append(f"writer {w}: {e!r}")

    def read(n):
        while writing.is_set():
            try:
                got = reader_client.get_object(Bucket=bucket, Key=key)
                body = got["Body"].read()
                digest = hashlib.sha256(body).hexdigest()
                problem = None
                if digest not in possible:
                    problem = f"a value nobody wrote ({len(body)} bytes)"
                elif got["ETag"] != f'"{md5_hex(body)}"':
                    problem = f"ETag {got['ETag']} is not the md5 of the {len(body)} bytes read"
                elif got["ContentLength"] != len(body):
                    problem = f"Content-Length {got['ContentLength']} for {len(body)} bytes"
            except Exception as e:  # noqa: BLE001 - reported below
                problem = repr(e)
            with lock:
                reads[0] += 1
                if problem:
                    failures.append(f"reader {n}: {problem}")

    readers = [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
    writers = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    writing.clear()
    for t in readers:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in readers + writers), "threads still running after 5 minutes"
    assert not failures, f"{len(failures)} failures in {reads[0]} reads: {failures[:10]}"
    assert reads[0] >= READERS, "the readers read nothing"
    # The last value standing is one of the writers' last values.
    final = reader_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert final in [value(w, WRITES_EACH - 1) for w in range(WRITERS)]


def test_racing_create_only_puts_store_exactly_one_value(bucket):
    """`If-None-Match: *` from several writers at once: the master checks it
    under the key's lock, so exactly one write wins and every other one is
    refused with PreconditionFailed (never two successes, which a check
    made before the upload would allow)."""
    racers = 6
    client = make_client(attempts=8)
    for round_ in range(3):
        key = f"once-{round_}"
        outcomes = [None] * racers
        start = threading.Barrier(racers)

        def race(n):
            start.wait()
            try:
                client.put_object(Bucket=bucket, Key=key, Body=value(n, round_), IfNoneMatch="*")
                outcomes[n] = "stored"
            except Exception as e:  # noqa: BLE001 - checked below
                outcomes[n] = getattr(e, "response", {}).get("Error", {}).get("Code", repr(e))

        threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a racer hung"
        winners = [n for n, o in enumerate(outcomes) if o == "stored"]
        assert len(winners) == 1, f"round {round_}: {outcomes}"
        assert all(o in ("stored", "PreconditionFailed") for o in outcomes), outcomes
        stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert stored == value(winners[0], round_)
