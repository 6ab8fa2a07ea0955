"""Settings: TOML file < environment < command line, validated once at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from ehsm_kms import config, errors


def test_precedence_file_then_environment_then_command_line(tmp_path: Path) -> None:
    toml = tmp_path / "kms.toml"
    toml.write_text('[server]\nport = 9100\nhost = "127.0.0.2"\nlog_level = "debug"\nkey_cache_ttl_ms = 5\n')
    env = {"EHSM_KMS_PORT": "9200", "EHSM_KMS_LOG_LEVEL": "warning"}
    s = config.load(config_file=str(toml), environ=env, overrides={"port": 9300})
    assert (s.port, s.host, s.log_level, s.key_cache_ttl_ms) == (9300, "127.0.0.2", "warning", 5)
    s = config.load(config_file=str(toml), environ=env)
    assert s.port == 9200
    s = config.load(environ={"EHSM_KMS_CONFIG": str(toml)})
    assert s.port == 9100


def test_defaults_are_the_embedded_single_node(tmp_path: Path) -> None:
    s = config.load(environ={}, overrides={"data_dir": str(tmp_path)})
    assert (s.host, s.port, s.run_mode, s.core_mode, s.sealer) == (
        "127.0.0.1",
        9000,
        "single",
        "isolated",
        "passphrase",
    )
    assert s.store == f"sqlite:///{tmp_path / 'ehsm-kms.db'}"
    assert s.effective_enroll_mode == "open"  # loopback


def test_enroll_mode_defaults_to_token_off_loopback() -> None:
    s = config.load(environ={}, overrides={"host": "0.0.0.0", "tls_self_signed": True})
    assert s.effective_enroll_mode == "token"
    s = config.load(environ={}, overrides={"host": "::1"})
    assert s.effective_enroll_mode == "open"


def test_plain_http_only_on_loopback_unless_allowed() -> None:
    with pytest.raises(errors.ConfigError, match="plain HTTP is only served on loopback"):
        config.load(environ={}, overrides={"host": "0.0.0.0"})
    assert config.load(environ={}, overrides={"host": "0.0.0.0", "allow_plain_http": True}).host == "0.0.0.0"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 70000}, "port must be between"),
        ({"enroll_mode": "sometimes"}, "enroll_mode must be one of"),
        ({"core_mode": "remote"}, "core_mode must be one of"),
        ({"tls_cert": "/x.pem"}, "tls_cert and tls_key go together"),
        ({"nonsense": 1}, "unknown setting"),
    ],
)
def test_bad_settings_are_refused_clearly(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        config.load(environ={}, overrides=overrides)


def test_bad_values_and_files(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not a valid int"):
        config.load(environ={"EHSM_KMS_PORT": "ninety"})
    with pytest.raises(errors.ConfigError, match="not a valid bool"):
        config.load(environ={"EHSM_KMS_ALLOW_PLAIN_HTTP": "perhaps"})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(errors.ConfigError, match="not valid TOML"):
        config.load(config_file=str(bad), environ={})
    with pytest.raises(errors.ConfigError, match="cannot read config file"):
        config.load(config_file=str(tmp_path / "missing.toml"), environ={})
