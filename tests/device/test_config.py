"""Config: one schema, a generated default that loads, errors that name file, key and expectation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_h
from hypothesis import strategies as st
from pydantic import ValidationError

from device.config import (
    ConfigError,
    Settings,
    default_config_text,
    load_settings,
    resolve_config_path,
    settings_from_dict,
)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    return p


def errors_of(path: Path) -> str:
    with pytest.raises(ConfigError) as ei:
        load_settings(path)
    return str(ei.value)


def test_generated_default_config_loads_with_the_given_dir_and_id(tmp_path):
    data_dir = tmp_path / "data"
    s = load_settings(write(tmp_path, default_config_text(data_dir, "lobby-3")))
    assert s.device.id == "lobby-3"
    assert s.paths.data_dir == data_dir.absolute()
    assert s.paths.key_dir == data_dir.absolute() / "keys"
    assert s.paths.media_dir == data_dir.absolute() / "media"
    assert s.sync is None and s.wecom is None
    assert s.device.languages == ["zh", "en"]


def test_default_config_documents_every_field(tmp_path):
    text = default_config_text(tmp_path, "k1")

    def walk(model, prefix):
        for name, info in model.model_fields.items():
            assert info.description, f"{prefix}{name} has no description"
            sub = info.annotation
            args = getattr(sub, "__args__", None)
            if args:
                sub = next(
                    (a for a in args if isinstance(a, type) and hasattr(a, "model_fields")), sub
                )
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                assert f"[{prefix}{name}]" in text, f"section [{prefix}{name}] missing"
                walk(sub, f"{prefix}{name}.")
            else:
                assert re.search(rf"^#?{name} = ", text, re.M), (
                    f"{prefix}{name} missing from default config"
                )
                assert f"# {info.description}" in text

    walk(Settings, "")


def test_commented_optional_sections_are_valid_when_uncommented(tmp_path):
    text = default_config_text(tmp_path / "d", "k1")
    # Enable everything shown commented out: "#key = v" and "#[section]" lines.
    enabled = re.sub(r"^#(?=[\[a-z])", "", text, flags=re.M)
    s = load_settings(write(tmp_path, enabled))
    assert s.sync is not None and s.sync.mqtt is not None and s.sync.mqtt.port == 8883
    assert s.sync.https is not None and s.sync.https.base_url.startswith("https://")
    assert s.wecom is not None and s.wecom.state_ttl_s == 120
    assert s.kiosk.technician_pin_hash


def test_wrong_port_names_file_key_expectation_and_value(tmp_path):
    text = default_config_text(tmp_path, "k1") + '\n[sync.mqtt]\nhost = "broker"\nport = "abc"\n'
    path = write(tmp_path, text)
    msg = errors_of(path)
    assert f'{path}: sync.mqtt.port: expected an integer 1-65535, got "abc"' in msg.splitlines()


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            '[device]\nid = "k1"\n[session]\nmax_retakes = 9\n',
            "session.max_retakes: expected an integer 0-5, got 9",
        ),
        ('[device]\nid = "k 1"\n', "device.id: expected an id of letters, digits"),
        (
            '[device]\nid = "k1"\nlanguages = ["zh", "fr"]\n',
            'device.languages[1]: expected "zh" or "en", got "fr"',
        ),
        (
            '[device]\nid = "k1"\n[kiosk]\nfullscreen = "yes please"\n',
            'kiosk.fullscreen: expected true or false, got "yes please"',
        ),
        (
            '[device]\nid = "k1"\n[session.timeouts]\nhelp = -1\n',
            "session.timeouts.help: expected a number > 0, got -1",
        ),
        (
            '[device]\nid = "k1"\n[sync.mqtt]\nhost = "b"\nprot = 1883\n',
            "sync.mqtt.prot: unknown key (known keys here: host, port",
        ),
        ('[device]\nid = "k1"\n[wecom]\ncorp_id = "ww1"\n', "wecom.agent_id: required key missing"),
        ("[paths]\n", "device: required key missing"),
        (
            '[device]\nid = "k1"\nlanguages = ["zh"]\ndefault_language = "en"\n',
            'device.default_language: expected one of device.languages ["zh"], got "en"',
        ),
    ],
)
def test_bad_values_are_named(tmp_path, snippet, expected):
    path = write(tmp_path, snippet)
    msg = errors_of(path)
    assert any(line.startswith(f"{path}: {expected}") for line in msg.splitlines()), msg


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path, '[device]\nid = "k1"\n[session]\nmax_retakes = -1\nface_lost_pause_s = "x"\n'
    )
    with pytest.raises(ConfigError) as ei:
        load_settings(path)
    assert len(ei.value.problems) == 2


def test_invalid_toml_names_line(tmp_path):
    msg = errors_of(write(tmp_path, '[device\nid = "k1"\n'))
    assert "invalid TOML" in msg and "line 1" in msg


def test_missing_file_says_how_to_make_one(tmp_path):
    msg = errors_of(tmp_path / "nope.toml")
    assert "nope.toml" in msg and "kiosk-provision init" in msg


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    path = write(tmp_path, '[device]\nid = "k1"\n[paths]\ndata_dir = "var"\n')
    s = load_settings(path)
    assert s.paths.data_dir == tmp_path / "var"
    assert s.paths.key_dir == tmp_path / "var" / "keys"


def test_settings_are_frozen(settings):
    with pytest.raises(ValidationError):
        settings.device.id = "other"  # type: ignore[misc]


def test_resolve_config_path_order(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERVIEW_KIOSK_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_config_path(tmp_path / "arg.toml") == tmp_path / "arg.toml"
    assert resolve_config_path(None) == tmp_path / "env.toml"
    monkeypatch.delenv("INTERVIEW_KIOSK_CONFIG")
    monkeypatch.chdir(tmp_path)
    # Not a source checkout: the system path.
    assert resolve_config_path(None) == Path("/etc/interview-kiosk/config.toml")
    (tmp_path / "pyproject.toml").write_text("")
    if not Path("/etc/interview-kiosk/config.toml").exists():
        assert resolve_config_path(None) == tmp_path / "var" / "config.toml"


def test_default_config_refuses_a_bad_device_id(tmp_path):
    with pytest.raises(ConfigError):
        default_config_text(tmp_path, "has/slash")


_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
    st.text(max_size=12), st.text(alphabet="\n\x85\u2028\r\t ab", max_size=5), st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=6), st.integers(), max_size=2),
)
_KEYS = [
    ("device", "id"), ("device", "languages"), ("device", "tenant"), ("paths", "data_dir"),
    ("session", "max_retakes"), ("session", "timeouts"), ("retention", "days"),
    ("models", "vosk"), ("sync", "mqtt"), ("kiosk", "camera"), ("kiosk", "fullscreen"),
    ("wecom", "agent_id"), ("nonsense", "key"), ("device", "bad\nkey"),
]


@settings_h(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _values), min_size=1, max_size=4))
def test_any_edit_loads_or_gives_one_named_line_per_problem(edits):
    data = {"device": {"id": "k1"}}
    for (section, key), value in edits:
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    try:
        settings_from_dict(data, path="/etc/interview-kiosk/config.toml")
    except ConfigError as e:
        assert e.problems
        lines = str(e).splitlines()
        assert len(lines) == len(e.problems)
        for line in lines:
            assert re.match(r"^/etc/interview-kiosk/config\.toml: [a-z_]+(\.|\[|: )", line), line
