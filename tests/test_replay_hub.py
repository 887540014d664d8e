"""HfSource and `hubd mirror` against the real Hub's answers, replayed (tests/replayhub.py).

And what a failed mirror says: a repo the endpoint does not have is named with close names the
endpoint's search knows ("did you mean"), with the same error and exit code as without them.
"""

from __future__ import annotations

from collections.abc import Callable

from conftest import LORA, MODEL, Result
from support.fakehub import FakeHub
from test_partial_hubs import OlahLike


def test_a_missing_repo_is_named_with_close_names_from_the_search(
    hub: FakeHub, hubd: Callable[..., Result]
) -> None:
    result = hubd("mirror", "acme/tiny-llam", "--endpoint", hub.endpoint)

    assert result.code == 3, result.err
    assert "repository acme/tiny-llam not found" in result.err
    assert f"hint: did you mean {MODEL}, {LORA}?" in result.err
    searches = [r.path for r in hub.requests if r.path.startswith("/api/models?")]
    assert searches == ["/api/models?search=tiny-llam&limit=20"]


def test_a_failed_search_leaves_the_error_as_it_was(
    home: object, hubd: Callable[..., Result]
) -> None:
    with OlahLike() as olah:  # no search route: 404
        result = hubd("mirror", "acme/missing", "--endpoint", olah.endpoint)
    assert result.code == 3, result.err
    assert "repository acme/missing not found" in result.err
    assert "did you mean" not in result.err
