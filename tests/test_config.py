import re
from pathlib import Path

import pytest

from hubd.config import load_settings, setting_docs
from hubd.errors import ConfigError

README = Path(__file__).parent.parent / "README.md"


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"HUBD_HOME": str(tmp_path)})
    assert s.home == tmp_path
    assert s.endpoint == "https://huggingface.co"
    assert s.catalog_url == f"sqlite:///{tmp_path / 'catalog.db'}"
    assert s.store_dir == tmp_path / "store"
    assert s.concurrency == 8 and s.verify_workers >= 1


def test_default_home_follows_xdg(tmp_path: Path) -> None:
    assert load_settings({"XDG_DATA_HOME": str(tmp_path)}).home == tmp_path / "hubd"


def test_precedence_toml_env_flag(tmp_path: Path) -> None:
    (tmp_path / "hubd.toml").write_text("[mirror]\nconcurrency = 3\nparts = 2\n")
    env = {"HUBD_HOME": str(tmp_path), "HUBD_PARTS": "5", "HF_ENDPOINT": "http://hf.local/"}
    s = load_settings(env)
    assert (s.concurrency, s.parts, s.endpoint) == (3, 5, "http://hf.local")
    assert load_settings(env, concurrency=9).concurrency == 9
    assert load_settings({**env, "HUBD_ENDPOINT": "http://x"}).endpoint == "http://x"


def test_offline_and_token_from_hf_variables(tmp_path: Path) -> None:
    s = load_settings({"HUBD_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_x"})
    assert s.offline is True and s.token == "hf_x"


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        ("[mirror]\nconcurrency = 'many'\n", {}),
        ("nonsense = 1\n", {}),
        ("[[broken\n", {}),
        ("token = 'hf_secret'\n", {}),
        ("", {"HUBD_CONCURRENCY": "0"}),
        ("", {"HUBD_TIMEOUT": "-1"}),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, toml: str, env: dict[str, str]) -> None:
    (tmp_path / "hubd.toml").write_text(toml)
    with pytest.raises(ConfigError):
        load_settings({"HUBD_HOME": str(tmp_path), **env})


def test_every_setting_is_documented_in_readme() -> None:
    text = README.read_text()
    for doc in setting_docs():
        assert re.search(rf"`{re.escape(doc.key)}`", text), f"{doc.key} missing from README"
        assert doc.env in text, f"{doc.env} missing from README"
