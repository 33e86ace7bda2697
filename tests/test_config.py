"""Configuration: defaults < TOML file < EWG_* environment < command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.mqtt import BrokerAddress


def test_file_then_environment_then_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ewg.toml"
    config.write_text(
        'broker_url = "mqtt://file-broker:1883"\nhttp_port = 9000\ntimezone = "UTC"\n',
        encoding="utf-8",
    )
    assert load_settings(config).broker_url == "mqtt://file-broker:1883"
    monkeypatch.setenv("EWG_BROKER_URL", "mqtt://env-broker:1884")
    monkeypatch.setenv("EWG_HTTP_PORT", "9100")
    settings = load_settings(config, http_port=9200)
    assert settings.broker_url == "mqtt://env-broker:1884"  # environment beats the file
    assert settings.http_port == 9200  # the command line beats both
    assert settings.timezone == "UTC"  # the file beats the default


def test_unknown_keys_and_missing_files_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "ewg.toml"
    config.write_text('brokr_url = "mqtt://typo:1883"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="brokr_url"):
        load_settings(config)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_broker_urls() -> None:
    assert BrokerAddress.parse("mqtt://gw:secret@broker.example:1884") == BrokerAddress(
        "broker.example", 1884, False, "gw", "secret"
    )
    assert BrokerAddress.parse("mqtts://broker").port == 8883
    with pytest.raises(ConfigError, match="mqtt://"):
        BrokerAddress.parse("http://broker")


def test_json_logs_are_one_object_per_line() -> None:
    import io
    import json
    import logging

    from gateway.cli import log_handler

    handler = log_handler("json")
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger("ewg.test.json")
    logger.addHandler(handler)
    try:
        logger.warning("store write failed (%s)", "timeout")
    finally:
        logger.removeHandler(handler)
    record = json.loads(stream.getvalue())
    assert record["level"] == "WARNING" and record["logger"] == "ewg.test.json"
    assert record["message"] == "store write failed (timeout)" and record["ts"]
