import re
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from hubd.config import ConfigFile, LlmEntry, Settings, load_settings, setting_docs
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
        ("[mirror]\ntimeout = '30'\n", {}),
        ("[mirror]\nconcurrency = 2.0\n", {}),
        ("offline = 'yes'\n", {}),
        ("mirror = 3\n", {}),
        ("[node]\nurl = 'ftp://x'\n", {}),
        ("", {"HUBD_PORT": "65536"}),
        ("", {"HF_HUB_OFFLINE": "maybe"}),
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


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        (
            "[mirror]\nconcurrency = 'lots'\n",
            {},
            "{file}: invalid value 'lots' for mirror.concurrency",
        ),
        ("[mirror]\nconcurency = 3\n", {}, "{file}: unknown setting 'mirror.concurency'"),
        ("home = '/x'\n", {}, "{file}: unknown setting 'home'"),
        (
            "",
            {"HUBD_CONCURRENCY": "0"},
            "HUBD_CONCURRENCY: invalid value '0' for mirror.concurrency",
        ),
        ("", {"HUBD_NODE_NAME": "x", "HUBD_PARTS": "two"}, "HUBD_PARTS: invalid value 'two'"),
        (
            '[[llm]]\nalias = "a"\nrepo = "o/n"\nfile = 3\n',
            {},
            "{file}: invalid value 3 for llm[0].file",
        ),
        ('[[llm]]\nalias = "a"\nrepo = "o/n"\nrevision = "v1"\n', {}, "'llm[0].revision'"),
        ('[[llm]]\nalias = ""\nrepo = "o/n"\n', {}, "{file}: invalid value '' for llm[0].alias"),
        ('[[llm]]\nalias = "a"\nrepo = "o/n"\nlora = "x"\n', {}, "llm[0].lora: not a repo id"),
        ("llm = 'x'\n", {}, "{file}: invalid value 'x' for llm"),
    ],
)
def test_config_errors_name_the_key_and_where_it_was_set(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    (tmp_path / "hubd.toml").write_text(toml)
    with pytest.raises(ConfigError) as raised:
        load_settings({"HUBD_HOME": str(tmp_path), **env})
    assert message.format(file=tmp_path / "hubd.toml") in str(raised.value)


def test_flags_are_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--concurrency: invalid value 0"):
        load_settings({"HUBD_HOME": str(tmp_path)}, concurrency=0)
    with pytest.raises(ConfigError, match="unknown setting 'concurency'"):
        load_settings({"HUBD_HOME": str(tmp_path)}, concurency=3)


def test_toml_values_are_typed_and_flattened(tmp_path: Path) -> None:
    (tmp_path / "hubd.toml").write_text(
        "offline = true\n[mirror]\ntimeout = 3\n[store]\npath = '~/blobs'\n"
        '[[llm]]\nalias = "a"\nrepo = "o/n"\nlora = "o/l@v1"\n'
        '[[llm]]\nalias = "b"\nrepo = "o/n"\nfile = "*Q8_0*"\n'
    )
    s = load_settings({"HUBD_HOME": str(tmp_path), "HUBD_OFFLINE": "", "HUBD_RETRIES": "0"})
    assert s.offline is True and s.timeout == 3.0 and s.retries == 0
    assert s.store_dir == Path("~/blobs").expanduser()
    assert s.llm == (
        LlmEntry(alias="a", repo="o/n", lora="o/l@v1"),
        LlmEntry(alias="b", repo="o/n", file="*Q8_0*"),
    )


def test_settings_built_directly_resolve_their_defaults(tmp_path: Path) -> None:
    s = Settings(home=tmp_path).resolved()
    assert s.store_dir == tmp_path / "store" and s.resolved() == s
    assert s.model_copy(update={"parts": 1}).parts == 1


def test_the_file_model_has_a_key_for_every_setting_but_home_and_token() -> None:
    def keys_of(model: type[BaseModel], under: str) -> set[str]:
        keys = set()
        for name, info in model.model_fields.items():
            args = get_args(info.annotation)
            table = args[0] if args else info.annotation
            if isinstance(table, type) and issubclass(table, BaseModel):
                keys |= keys_of(table, f"{under}{name}.")  # [store] s3.bucket: store.s3.bucket
            else:
                keys.add(f"{under}{name}")
        return keys

    keys = keys_of(ConfigFile, "")
    assert keys == {doc.key for doc in setting_docs()} - {"home", "token"}
