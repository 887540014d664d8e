import pytest

from hubd.errors import InvalidReference, UnsafePath
from hubd.refs import RepoRef, is_commit, safe_relpath


def test_parse_repo_and_revision() -> None:
    ref = RepoRef.parse("mistralai/Mistral-7B-v0.1@v1.0")
    assert (ref.org, ref.name, ref.revision) == ("mistralai", "Mistral-7B-v0.1", "v1.0")
    assert str(ref) == "mistralai/Mistral-7B-v0.1@v1.0"
    assert RepoRef.parse("a/b").revision is None
    assert RepoRef.parse("a/b@refs/pr/1").revision == "refs/pr/1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "noslash",
        "a/b/c",
        "../b",
        "a/..",
        "a/b@",
        "a/b@../x",
        "a/b@/abs",
        "/a/b",
        "a/b c",
        "a/b@x\x00y",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(InvalidReference):
        RepoRef.parse(text)


def test_is_commit() -> None:
    assert is_commit("0" * 40)
    assert not is_commit("main")


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "a/../../b",
        "/etc/passwd",
        "a\\b",
        "a\x00b",
        "",
        "a//b",
        "./a",
        "C:/windows",
        "a/.",
    ],
)
def test_unsafe_paths(path: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relpath(path)


def test_safe_paths() -> None:
    assert safe_relpath("model-00001-of-00002.safetensors") == "model-00001-of-00002.safetensors"
    assert safe_relpath("sub/dir/file.json") == "sub/dir/file.json"
    assert safe_relpath("..hidden") == "..hidden"
