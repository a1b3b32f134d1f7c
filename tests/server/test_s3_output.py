"""The S3 output store against a real S3-compatible server (moto, bucket `logs`): a
stream written in chunks reads back byte-exact over any range; a chunk written again,
or cut differently by a second writer, is stored once; a stream's objects go with its
prefix; keys that a hand-made signer got wrong work; an unreachable store or a missing
bucket is "not ready" with the reason."""

from __future__ import annotations

import pytest

from fleetrun.server.output import S3OutputStore
from fleetrun.server.s3store import S3, S3Error
from fleetrun.server.settings import Settings
from tests.harness import free_port

CREDENTIALS = {"s3_access_key_id": "AKIDTEST", "s3_secret_access_key": "not-a-real-secret"}


def _store(endpoint: str, bucket: str = "logs", prefix: str = "out/") -> S3OutputStore:
    settings = Settings.load({"s3_endpoint_url": endpoint, **CREDENTIALS}, env={})
    return S3OutputStore(S3(settings), bucket, prefix)


async def _read(store: S3OutputStore, key: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


async def test_a_stream_written_in_chunks_reads_back_over_any_range(s3):
    store = _store(s3)
    key = "cmd/node-1/0.stdout"
    data = bytes(range(256)) * 40  # 10,240 bytes, in chunks of 1,000
    for offset in range(0, len(data), 1000):
        store.write(key, offset, data[offset : offset + 1000])
    assert await _read(store, key, 0, len(data)) == data
    for start, end in [(0, 1), (999, 1001), (1500, 7321), (10_000, 10_240), (5, 5)]:
        assert await _read(store, key, start, end) == data[start:end]
    assert await _read(store, "cmd/node-1/0.stderr", 0, 10) == b""  # nothing written
    await store.close()


async def test_a_chunk_written_again_or_cut_differently_is_stored_once(s3):
    store = _store(s3)
    key = "cmd/node-2/0.stdout"
    store.write(key, 0, b"hello ")
    store.write(key, 0, b"hello ")  # the same chunk again, after a crash
    store.write(key, 6, b"world, ")
    store.write(key, 3, b"lo world, and")  # a second replica's cut of the same bytes
    assert await _read(store, key, 0, 16) == b"hello world, and"
    assert await _read(store, key, 4, 9) == b"o wor"
    await store.close()


async def test_a_prefix_deleted_takes_every_object_of_its_streams_and_no_other(s3):
    store = _store(s3, prefix="")
    for step in range(3):
        store.write(f"gone/node/{step}.stdout", 0, b"x")
    store.write("gone/node-2/0.stdout", 0, b"kept")  # the same start, another node
    await store.delete_prefix("gone/node")
    assert store.s3.list_now("logs", "gone/node/") == []
    assert await _read(store, "gone/node-2/0.stdout", 0, 4) == b"kept"
    await store.close()


async def test_keys_with_spaces_plus_equals_and_non_ascii_round_trip(s3):
    store = _store(s3, prefix="a b+c=d/é/")
    store.write("cmd/ñode/0.stdout", 0, b"odd keys")
    assert await _read(store, "cmd/ñode/0.stdout", 0, 8) == b"odd keys"
    await store.close()


async def test_a_missing_bucket_or_an_unreachable_store_is_not_ready(s3):
    missing = _store(s3, bucket="no-such-bucket")
    assert "s3://no-such-bucket/ was refused (HTTP 404" in (await missing.unready() or "")
    with pytest.raises(S3Error) as refused:
        missing.write("k", 0, b"x")
    assert refused.value.status == 404
    assert await _store(s3).unready() is None
    away = _store(f"http://127.0.0.1:{free_port()}")
    assert "could not be reached" in (await away.unready() or "")
    for store in (missing, away):
        await store.close()


@pytest.mark.parametrize("value", ["logs", "s3://", "s3:///prefix", "file:///tmp/x"])
def test_an_output_store_that_is_not_an_s3_uri_is_refused_with_what_to_write(value):
    with pytest.raises(Exception, match="must be s3://BUCKET or s3://BUCKET/PREFIX"):
        Settings.load({"output_store": value}, env={})


def test_the_prefix_of_an_output_store_ends_in_one_slash():
    assert Settings.load({"output_store": "s3://b"}, env={}).output_bucket == ("b", "")
    assert Settings.load({"output_store": "s3://b/p/q/"}, env={}).output_bucket == ("b", "p/q/")
