"""Shared fixtures: a device with a temp data directory, real keys and a real encrypted store.

Package fixtures (mosquitto, fake WeCom, Qt) live in tests/<package>/conftest.py.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device.config import Settings, default_config_text, load_settings, settings_from_dict
from device.keys import create_master_key
from device.store import Store

DEVICE_ID = "kiosk-test-01"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory (what `kiosk-provision init --data-dir` points at)."""
    d = tmp_path / "var"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def config_path(tmp_path: Path, data_dir: Path) -> Path:
    """A default config written by the same code as `kiosk-provision init`, keys created."""
    path = tmp_path / "config.toml"
    path.write_text(default_config_text(data_dir, DEVICE_ID), encoding="utf-8")
    create_master_key(data_dir / "keys")
    return path


@pytest.fixture
def settings(config_path: Path) -> Settings:
    """Settings for the temp device (tenant "default", device "kiosk-test-01")."""
    return load_settings(config_path)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def make_settings(config_path: Path) -> Callable[[dict[str, Any]], Settings]:
    """Settings for the same temp device with some keys overridden, e.g.
    make_settings({"sync": {"mqtt": {"host": "127.0.0.1", "port": port, "tls": False}}})."""
    base = tomllib.loads(config_path.read_text(encoding="utf-8"))

    def make(overrides: dict[str, Any]) -> Settings:
        return settings_from_dict(_merge(base, overrides), path=config_path)

    return make


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The temp device's open encrypted store (closed after the test)."""
    s = Store.open_from_settings(settings)
    try:
        yield s
    finally:
        s.close()
