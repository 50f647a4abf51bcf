"""A node's config file: every load error names the file and the key; env overrides apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import Config, Home
from hub.errors import ConfigError

VALID = """\
[node]
court = "豫14"
name = "商丘市中级人民法院"
listen = "127.0.0.1:7400"
"""


def _home(tmp_path: Path, text: str | bytes | None = VALID) -> Home:
    home = Home(tmp_path / "node")
    home.path.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        home.config_file.write_bytes(text)
    elif text is not None:
        home.config_file.write_text(text, encoding="utf-8")
    return home


def _error(home: Home, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        home.load({} if environ is None else environ)
    assert info.value.reason == "invalid_config"
    return str(info.value)


def test_valid_config_loads(tmp_path: Path) -> None:
    home = _home(tmp_path)
    config = home.load({})
    assert str(config.court) == "豫14"
    assert config.node.listen == "127.0.0.1:7400"
    assert config.parent is None and config.store.url == ""
    assert home.store_url(config) == f"sqlite:///{home.path / 'store.db'}"


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    home = _home(tmp_path)
    config = home.load({})
    home.save(config)
    assert home.load({}) == config


def test_missing_file(tmp_path: Path) -> None:
    home = _home(tmp_path, None)
    message = _error(home)
    assert str(home.path) in message and "config.toml" in message


@pytest.mark.parametrize(
    "text",
    ['[node\ncourt = "豫14"\n', "[node]\ncourt = 豫14\n", '[node]\ncourt = "a"\ncourt = "b"\n', b"\xff\xfe[node]\n"],
    ids=["unclosed table", "bare string", "duplicate key", "not utf-8"],
)
def test_bad_toml(tmp_path: Path, text: str | bytes) -> None:
    home = _home(tmp_path, text)
    message = _error(home)
    assert str(home.config_file) in message
    assert "TOML" in message


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('colour = "red"\n', "node.colour"),
        ('\n[store]\nurl = ""\npath = "/tmp/x"\n', "store.path"),
        ("\n[nodes]\nx = 1\n", "nodes"),
        ("\n[federation]\ndedupe_retention = 3\n", "federation.dedupe_retention"),
    ],
)
def test_unknown_key(tmp_path: Path, extra: str, key: str) -> None:
    home = _home(tmp_path, VALID + extra)
    message = _error(home)
    assert str(home.config_file) in message
    assert key in message


@pytest.mark.parametrize("code", ["豫00", "蒙01", "贵01", "豫1", "河南", "", "豫14 01"])
def test_bad_court_code(tmp_path: Path, code: str) -> None:
    home = _home(tmp_path, VALID.replace('"豫14"', f'"{code}"'))
    message = _error(home)
    assert str(home.config_file) in message
    assert "node.court" in message


def test_bad_court_code_message_says_what_is_wrong(tmp_path: Path) -> None:
    message = _error(_home(tmp_path, VALID.replace('"豫14"', '"蒙01"')))
    assert "'内'" in message  # the right 法院代字 is named


@pytest.mark.parametrize("listen", ["7400", "localhost", ":7400", "host:", "host:port", "host:70000", "host:-1"])
def test_bad_listen_address(tmp_path: Path, listen: str) -> None:
    home = _home(tmp_path, VALID.replace('"127.0.0.1:7400"', f'"{listen}"'))
    message = _error(home)
    assert str(home.config_file) in message
    assert "node.listen" in message


def test_bad_parent_section(tmp_path: Path) -> None:
    text = VALID + '\n[parent]\ncourt = "豫"\naddress = "10.0.0.1:7400"\nfingerprint = "XYZ"\n'
    message = _error(_home(tmp_path, text))
    assert "parent.fingerprint" in message


def test_missing_required_key(tmp_path: Path) -> None:
    message = _error(_home(tmp_path, VALID.replace('listen = "127.0.0.1:7400"\n', "")))
    assert "node.listen" in message


def test_env_overrides_store_url(tmp_path: Path) -> None:
    home = _home(tmp_path, VALID + '\n[store]\nurl = "sqlite:////from/file.db"\n')
    url = "postgresql+psycopg://courthub@db:5432/courthub"
    config = home.load({"COURTHUB_STORE__URL": url, "COURTHUB_HOME": "/elsewhere", "OTHER": "x"})
    assert config.store.url == url
    assert home.store_url(config) == url
    assert home.load({}).store.url == "sqlite:////from/file.db"  # the file is untouched


def test_env_override_from_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURTHUB_STORE__URL", "sqlite:////env.db")
    monkeypatch.setenv("COURTHUB_FEDERATION__DEDUPE_RETENTION_DAYS", "90")
    config = _home(tmp_path).load()
    assert config.store.url == "sqlite:////env.db"
    assert config.federation.dedupe_retention_days == 90


def test_env_override_is_validated_too(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert "node.court" in _error(home, {"COURTHUB_NODE__COURT": "豫00"})
    assert "federation.dedupe_retention_days" in _error(home, {"COURTHUB_FEDERATION__DEDUPE_RETENTION_DAYS": "0"})
    assert "store.urll" in _error(home, {"COURTHUB_STORE__URLL": "x"})


def test_config_model_rejects_extra_top_level_keys() -> None:
    with pytest.raises(ValueError):
        Config.model_validate({"node": {"court": "豫14", "name": "x", "listen": "h:1"}, "extra": {}})


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("[agency]\nretry_backoff_s = [2, -1]\n", "agency.retry_backoff_s"),
        ("[agency]\nretry_backoff_s = []\n", "agency.retry_backoff_s"),
        ("[agency]\nmax_attempts = 0\n", "agency.max_attempts"),
        ("[agency]\nack_wait_s = 0.1\n", "agency.ack_wait_s"),
    ],
)
def test_bad_agency_retry_settings(tmp_path: Path, section: str, key: str) -> None:
    message = _error(_home(tmp_path, VALID + "\n" + section))
    assert key in message, message


@pytest.mark.parametrize("name", ["\\u0000", "\\u001b[31m", "\\r\\n"])
def test_court_name_with_control_characters(tmp_path: Path, name: str) -> None:
    message = _error(_home(tmp_path, VALID.replace('name = "', f'name = "{name}', 1)))
    assert "node.name" in message and "control character" in message, message


def test_agency_retry_settings_reach_the_job_queue(tmp_path: Path) -> None:
    from hub.agency.service import retry_policy

    home = _home(tmp_path, VALID + "\n[agency]\nmax_attempts = 3\nretry_backoff_s = [1, 5]\nack_wait_s = 12\n")
    policy = retry_policy(home.load().agency)
    assert (policy.max_attempts, policy.backoff_s, policy.ack_wait_s) == (3, (1.0, 5.0), 12.0)
    assert policy.delay(5) == 5.0  # the last delay repeats
