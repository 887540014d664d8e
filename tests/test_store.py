import hashlib
import threading
from pathlib import Path

import pytest

from hubd.errors import HashMismatch, SizeMismatch, UnsafePath
from hubd.hashes import git_blob_sha1
from hubd.store import Expected, Store

DATA = bytes(range(256)) * 1000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(store: Store, expected: Expected, data: bytes, step: int = 4096) -> str:
    with store.writer(expected) as w:
        if w.present:
            return w.present
        for i in range(w.offset, len(data), step):
            w.write(data[i : i + step])
        return w.commit()


def test_lfs_blob_is_verified_and_published(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = write(store, Expected("a/b/f", len(DATA), sha(DATA)), DATA)
    assert digest == sha(DATA)
    assert store.blob_path(digest).read_bytes() == DATA
    assert not list(store.tmp_dir.glob("*.partial"))
    assert write(store, Expected("c/d/f", len(DATA), sha(DATA)), DATA) == digest  # dedup


def test_git_blob_is_checked_by_sha1_and_indexed(tmp_path: Path) -> None:
    store = Store(tmp_path)
    oid = git_blob_sha1(b'{"a": 1}')
    digest = write(store, Expected("a/b/config.json", 8, None, oid), b'{"a": 1}')
    assert store.known_git_blob(oid) == digest == sha(b'{"a": 1}')


def test_mismatch_deletes_temp_and_names_both_digests(tmp_path: Path) -> None:
    store = Store(tmp_path)
    bad = bytearray(DATA)
    bad[500] ^= 1
    with pytest.raises(HashMismatch) as err:
        write(store, Expected("a/b/model.safetensors", len(DATA), sha(DATA)), bytes(bad))
    assert "a/b/model.safetensors" in str(err.value)
    assert sha(DATA) in str(err.value) and sha(bytes(bad)) in str(err.value)
    assert not list(store.tmp_dir.glob("*.partial"))
    assert not store.has_blob(sha(DATA))


def test_git_sha1_mismatch(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(HashMismatch, match="git blob sha1"):
        write(store, Expected("a/b/c.json", 3, None, git_blob_sha1(b"abc")), b"abd")


def test_more_bytes_than_declared_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(SizeMismatch):
        write(store, Expected("a/b/f", 10, sha(DATA[:10])), DATA[:20])
    assert not list(store.tmp_dir.glob("*.partial"))


def test_resume_hashes_the_prefix_on_disk(tmp_path: Path) -> None:
    store = Store(tmp_path)
    expected = Expected("a/b/f", len(DATA), sha(DATA))
    with store.writer(expected) as w:
        w.write(DATA[:100_000])  # interrupted: never committed
    with store.writer(expected) as w:
        assert w.offset == 100_000
        w.write(DATA[100_000:])
        assert w.commit() == sha(DATA)


def test_resume_with_corrupt_prefix_fails_whole_file_check(tmp_path: Path) -> None:
    store = Store(tmp_path)
    expected = Expected("a/b/f", len(DATA), sha(DATA))
    with store.writer(expected) as w:
        w.write(b"\xff" * 1000)
    with pytest.raises(HashMismatch):
        write(store, expected, DATA)


def test_concurrent_writers_produce_one_blob(tmp_path: Path) -> None:
    store = Store(tmp_path)
    expected = Expected("a/b/f", len(DATA), sha(DATA))
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(write(store, expected, DATA)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [sha(DATA)] * 4
    assert [p.name for _, p in store.iter_blobs()] == [sha(DATA)]


def test_snapshot_links_refs_and_gc(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = write(store, Expected("a/b/f", len(DATA), sha(DATA)), DATA)
    snap = store.link_snapshot("a/b", "c" * 40, [("sub/model.bin", digest)])
    assert (snap / "sub/model.bin").read_bytes() == DATA
    assert (snap / "sub/model.bin").is_symlink()
    store.set_ref("a/b", "main", "c" * 40)
    assert store.get_ref("a/b", "main") == "c" * 40
    store.remove_snapshot("a/b", "c" * 40)
    assert not snap.exists() and store.get_ref("a/b", "main") is None
    assert store.collect_garbage(keep=set()) == (1, len(DATA))
    assert not store.has_blob(digest)


# The store's second line of defence: whatever a caller passes, no path leaves the root.
BAD_DIGESTS = ["../../x", "a" * 63, "A" * 64, "a" * 64 + "\n", "", "../" * 10 + "etc/passwd"]
BAD_COMMITS = ["../../../..", "../honest/" + "0" * 40, "abc123", "0" * 40 + "\n", "g" * 40]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_digests_that_are_not_digests_never_become_paths(tmp_path: Path, digest: str) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(UnsafePath):
        store.blob_path(digest)
    with pytest.raises(UnsafePath):
        store.writer(Expected("x", 3, digest)).__enter__()
    with pytest.raises(UnsafePath):
        store.writer(Expected("x", 3, None, digest)).__enter__()
    assert not (tmp_path / "store" / "tmp").exists() or not any(
        (tmp_path / "store" / "tmp").iterdir()
    )


@pytest.mark.parametrize("commit", BAD_COMMITS)
def test_commits_that_are_not_commits_never_become_paths(tmp_path: Path, commit: str) -> None:
    """M64: `hubd rm` of a traversal commit must not rmtree what it names."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    store = Store(tmp_path / "store")
    for call in (store.snapshot_dir, store.signature_dir, store.remove_snapshot):
        with pytest.raises(UnsafePath):
            call("evil/x", commit)
    with pytest.raises(UnsafePath):
        store.set_ref("evil/x", "main", commit)
    with pytest.raises(UnsafePath):
        store.snapshot_dir("../evil", "0" * 40)
    assert (victim / "precious").read_text() == "keep"


def test_a_symlink_at_a_blob_path_is_not_a_blob(tmp_path: Path) -> None:
    """D19, M58: a link planted where a blob goes is neither present nor readable."""
    store = Store(tmp_path / "store")
    secret = tmp_path / "node.key"
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----")
    digest = "a" * 64
    store.blob_path(digest).parent.mkdir(parents=True)
    store.blob_path(digest).symlink_to(secret)
    assert not store.has_blob(digest)
    assert not store.has_blob(digest, secret.stat().st_size)
    with pytest.raises(OSError):
        store.open_blob(digest)
    assert store.strays() == [store.blob_path(digest)]
    assert list(store.iter_blobs()) == []
