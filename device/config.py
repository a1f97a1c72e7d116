"""The appliance's settings: one typed schema, one TOML file, errors a technician can act on.

Every setting is declared once here (type, default, description); the commented default
config and the error messages come from those declarations. Never put a secret in it.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

ENV_VAR = "INTERVIEW_KIOSK_CONFIG"
SYSTEM_CONFIG = Path("/etc/interview-kiosk/config.toml")
DEV_CONFIG = Path("var/config.toml")

# Tenant and device ids become MQTT topic levels, so they may not contain / + # or spaces.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_ID_EXPECT = "an id of letters, digits, '.', '_' or '-' (1-64 characters)"

Language = Literal["zh", "en"]


class ConfigError(Exception):
    """A config file that cannot be used; str() is one line per problem, file and key named."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- sections -------------------------------------------------------------------------


class DeviceSection(_Section):
    """Who this terminal is and where it stands."""

    id: str = Field(
        pattern=_ID_PATTERN,
        description="Device id, unique within the tenant; part of every MQTT topic",
        json_schema_extra={"expect": _ID_EXPECT, "example": "kiosk-001"},
    )
    company_name: str = Field("", description="Company name shown on the welcome screen")
    site_name: str = Field("", description="Site name, e.g. 上海总部 前台 / Shanghai HQ lobby")
    site_location: str = Field("", description="Where the terminal stands (building, floor)")
    tenant: str = Field(
        "default",
        pattern=_ID_PATTERN,
        description="Tenant (customer) id; part of every MQTT topic",
        json_schema_extra={"expect": _ID_EXPECT},
    )
    languages: list[Language] = Field(
        default_factory=lambda: ["zh", "en"],
        min_length=1,
        description='Languages the screens offer, first is the default ("zh", "en")',
    )
    default_language: Language = Field("zh", description="Language of the idle screen")

    @field_validator("default_language")
    @classmethod
    def _default_is_offered(cls, v: str, info: ValidationInfo) -> str:
        langs = info.data.get("languages")
        if langs is not None and v not in langs:
            raise ValueError(f"expected one of device.languages {json.dumps(langs)}")
        return v


class PathsSection(_Section):
    """Where the device keeps its data. Relative paths are relative to the config file."""

    data_dir: Path = Field(
        Path("/var/lib/interview-kiosk"),
        description="Data directory: the encrypted store kiosk.db, media, models",
    )
    key_dir: Path | None = Field(
        None,
        description="Key directory (mode 0700), default <data_dir>/keys",
        json_schema_extra={"example": "/var/lib/interview-kiosk/keys"},
    )
    media_dir: Path | None = Field(
        None,
        description="Encrypted answer media, default <data_dir>/media",
        json_schema_extra={"example": "/var/lib/interview-kiosk/media"},
    )
    models_dir: Path | None = Field(
        None,
        description="Installed speech models, default <data_dir>/models",
        json_schema_extra={"example": "/var/lib/interview-kiosk/models"},
    )

    @field_validator("data_dir", "key_dir", "media_dir", "models_dir")
    @classmethod
    def _relative_to_config(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if v is not None and base is not None and not v.is_absolute():
            v = Path(base) / v
        return v

    @model_validator(mode="after")
    def _fill_defaults(self) -> PathsSection:
        # Frozen model: fill the derived defaults once, here, so every reader sees a Path.
        for name, sub in (("key_dir", "keys"), ("media_dir", "media"), ("models_dir", "models")):
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.data_dir / sub)
        return self


class TimeoutsSection(_Section):
    """Seconds a waiting state may last before the terminal returns to idle (or moves on)."""

    verifying: float = Field(120, gt=0, description="Sign-in in progress (QR scanned, code typed)")
    welcome: float = Field(120, gt=0, description="Welcome and consent screen")
    device_check: float = Field(90, gt=0, description="Camera and microphone check")
    review: float = Field(30, gt=0, description="Review after an answer, then next question")
    help: float = Field(600, gt=0, description="Waiting for HR after 'help' was pressed")
    paused: float = Field(60, gt=0, description="Candidate out of frame, then abandoned")
    finishing: float = Field(60, gt=0, description="Building the report at the end")
    done: float = Field(20, gt=0, description="Thank-you screen")
    declined: float = Field(15, gt=0, description="Consent declined screen")
    abandoned: float = Field(15, gt=0, description="Abandoned-session screen")
    interrupted: float = Field(15, gt=0, description="Interrupted-session screen")
    failed: float = Field(60, gt=0, description="Hardware-failure screen")


class SessionSection(_Section):
    """The interview session."""

    max_retakes: int = Field(
        1, ge=0, le=5, description="Retakes per question unless the question says otherwise"
    )
    face_lost_pause_s: float = Field(5, gt=0, description="Seconds without a face before pausing")
    answer_grace_s: float = Field(
        20,
        gt=0,
        description="After an answer's time is up, seconds to wait for the recording before the session fails",
    )
    timeouts: TimeoutsSection = Field(default_factory=TimeoutsSection, description="Timeouts")


class RetentionSection(_Section):
    """How long candidate data stays on the device."""

    days: int = Field(
        30,
        ge=0,
        le=3650,
        description="Days after delivery before a session's data is deleted (0 = at the next purge)",
    )
    interrupted_days: int = Field(
        30,
        ge=0,
        le=3650,
        description="Days after delivery before an interrupted session's data is deleted",
    )


class ModelsSection(_Section):
    """Speech models installed on this device."""

    vosk: dict[Language, Path] = Field(
        default_factory=dict,
        description='vosk model directory per language, e.g. { zh = "/var/lib/interview-kiosk/models/vosk-model-small-cn-0.22" }',
    )
    pocketsphinx_en: bool = Field(
        True, description="Use pocketsphinx for English when no vosk English model is set"
    )


class MqttSection(_Section):
    """MQTT 5 uplink/downlink to the customer's broker."""

    host: str = Field(
        min_length=1,
        description="Broker host name",
        json_schema_extra={"example": "mqtt.hr.example.internal"},
    )
    port: int = Field(8883, ge=1, le=65535, description="Broker port (8883 = MQTT over TLS)")
    tls: bool = Field(True, description="Use TLS")
    ca_file: Path | None = Field(
        None,
        description="CA certificate of the broker",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/ca.pem"},
    )
    cert_file: Path | None = Field(
        None,
        description="This device's client certificate",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/device.pem"},
    )
    key_file: Path | None = Field(
        None,
        description="This device's client key",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/device.key"},
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds")
    username: str | None = Field(
        None,
        description="User name when the broker uses passwords (password in the key dir)",
        json_schema_extra={"example": "kiosk-001"},
    )


class HttpsSection(_Section):
    """HTTPS uplink: answer clips, and the fallback for records when MQTT is down."""

    base_url: str = Field(
        pattern=r"^https?://\S+$",
        description="Base URL of the HR connector",
        json_schema_extra={
            "expect": "a URL starting with https://",
            "example": "https://hr-connector.example.internal/kiosk/v1",
        },
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificate of the server",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/ca.pem"},
    )
    cert_file: Path | None = Field(
        None,
        description="Client certificate",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/device.pem"},
    )
    key_file: Path | None = Field(
        None,
        description="Client key",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/device.key"},
    )
    timeout_s: float = Field(30, gt=0, description="Request timeout in seconds")


class SyncSection(_Section):
    """Delivery to the HR side. Leave out to keep everything on the device."""

    fallback_after_s: float = Field(
        300, gt=0, description="Seconds MQTT may be down before records go over HTTPS"
    )
    downlink_public_key_file: Path | None = Field(
        None,
        description="Ed25519 public key (PEM) that signs question banks, rosters, config and commands",
        json_schema_extra={"example": "/etc/interview-kiosk/hr-signing.pub"},
    )
    heartbeat_s: float = Field(60, gt=0, description="Seconds between heartbeats")
    receipt_timeout_s: float = Field(
        900, gt=0, description="Seconds a result or event the broker acknowledged may wait for HR's "
        "receipt before it is sent again (once HR's connector has sent any receipt)")
    mqtt: MqttSection | None = Field(None, description="MQTT broker")
    https: HttpsSection | None = Field(None, description="HTTPS connector")


class WecomSection(_Section):
    """WeCom (企业微信) sign-in and HR messages. The app secret is stored encrypted with
    `kiosk-provision wecom set-secret`, never here."""

    corp_id: str = Field(
        min_length=1,
        description="Corp id (企业ID)",
        json_schema_extra={"example": "ww0123456789abcdef"},
    )
    agent_id: int = Field(
        ge=1, description="Agent id of the interview app", json_schema_extra={"example": 1000002}
    )
    redirect_uri: str = Field(
        pattern=r"^https?://\S+$",
        description="OAuth callback URL registered in WeCom",
        json_schema_extra={
            "expect": "a URL starting with https://",
            "example": "https://kiosk-001.example.internal:8443/wecom/callback",
        },
    )
    state_ttl_s: float = Field(
        120, gt=0, le=3600, description="Seconds a sign-in QR code stays valid"
    )
    callback_host: str = Field("0.0.0.0", description="Address the sign-in callback listens on")
    callback_port: int = Field(
        8443, ge=1, le=65535, description="Port the sign-in callback listens on"
    )
    hr_oncall: list[str] = Field(
        default_factory=list,
        description="WeCom user ids of HR to message for help and results",
        json_schema_extra={"example": ["zhangwei", "lina"]},
    )
    mask_names: bool = Field(True, description="Mask candidate names in WeCom messages (张*伟)")
    api_base_url: str | None = Field(
        None,
        description="WeCom API base URL (only for tests and demos)",
        json_schema_extra={"example": "https://qyapi.weixin.qq.com/cgi-bin/"},
    )
    callback_cert_file: Path | None = Field(
        None,
        description="TLS certificate (PEM chain) the sign-in callback serves; needed for an https redirect_uri",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/callback.pem"},
    )
    callback_key_file: Path | None = Field(
        None,
        description="TLS private key of the sign-in callback",
        json_schema_extra={"example": "/etc/interview-kiosk/tls/callback.key"},
    )
    relay: bool = Field(
        False,
        description="Relay mode: the HR connector serves redirect_uri and forwards sign-ins over the downlink",
    )
    help_collapse_s: float = Field(
        60,
        ge=0,
        le=3600,
        description="Help presses within this many seconds send one WeCom message",
    )
    hr_link_url: str | None = Field(
        None,
        description="Link in HR's WeCom cards (the HR system's interview page)",
        json_schema_extra={"example": "https://ehr.example.internal/interviews"},
    )


class CameraSection(_Section):
    """Camera."""

    source: int | str = Field(0, description="Camera index (0 = /dev/video0) or a video file path")
    width: int = Field(1280, ge=160, le=7680, description="Capture width in pixels")
    height: int = Field(720, ge=120, le=4320, description="Capture height in pixels")
    fps: int = Field(30, ge=1, le=120, description="Frames per second")


class MicrophoneSection(_Section):
    """Microphone."""

    device: int | str = Field(
        "", description='Sound device name or index ("" = system default) or a WAV file path'
    )
    samplerate: int = Field(
        16000, ge=8000, le=96000, description="Sample rate in Hz (speech models expect 16000)"
    )


class KioskSection(_Section):
    """The terminal's screen and devices."""

    fullscreen: bool = Field(True, description="Run full screen")
    technician_pin_hash: str | None = Field(
        None,
        description="Hash of the technician PIN (set with kiosk-provision), unlocks the service menu",
        json_schema_extra={"example": "scrypt$..."},
    )
    camera: CameraSection = Field(default_factory=CameraSection, description="Camera")
    microphone: MicrophoneSection = Field(
        default_factory=MicrophoneSection, description="Microphone"
    )


class Settings(_Section):
    """Everything the kiosk, the sync daemon and the provisioning CLI are configured with."""

    device: DeviceSection = Field(description="This terminal")
    paths: PathsSection = Field(default_factory=PathsSection, description="Directories")
    session: SessionSection = Field(default_factory=SessionSection, description="Interview session")
    retention: RetentionSection = Field(
        default_factory=RetentionSection, description="Data retention"
    )
    models: ModelsSection = Field(default_factory=ModelsSection, description="Speech models")
    sync: SyncSection | None = Field(None, description="Delivery to HR (MQTT / HTTPS)")
    wecom: WecomSection | None = Field(None, description="WeCom sign-in and messages")
    kiosk: KioskSection = Field(
        default_factory=KioskSection, description="Screen, camera, microphone"
    )


# --- loading ----------------------------------------------------------------------------


def resolve_config_path(arg: str | Path | None) -> Path:
    """--config, else $INTERVIEW_KIOSK_CONFIG, else /etc/interview-kiosk/config.toml.

    In a source checkout (a pyproject.toml in the working directory) without the /etc file,
    ./var/config.toml, so development never needs root.
    """
    if arg:
        return Path(arg).expanduser().absolute()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().absolute()
    if SYSTEM_CONFIG.exists() or not Path("pyproject.toml").exists():
        return SYSTEM_CONFIG
    return DEV_CONFIG.absolute()


def load_settings(path: Path | str) -> Settings:
    """Read and validate the TOML file; raise ConfigError naming file, key, expectation."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            path,
            ["no such file (create one with: kiosk-provision init --config PATH --data-dir DIR)"],
        ) from None
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(path, [f"not UTF-8 text (byte {e.start})"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"invalid TOML: {e}"]) from None
    return settings_from_dict(data, path=path)


def settings_from_dict(data: dict[str, Any], *, path: Path | str = "config.toml") -> Settings:
    """Validate already-parsed settings (also used for config pushed by the HR side)."""
    path = Path(path)
    try:
        return Settings.model_validate(data, context={"base_dir": path.parent.absolute()})
    except ValidationError as e:
        raise ConfigError(path, [_describe(err) for err in e.errors()]) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return _printable(out)


def _unwrap(annotation: Any) -> Any:
    """X | None -> X; Annotated stays as-is (pydantic already split metadata off)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _field_at(loc: tuple[Any, ...]) -> tuple[Any, type[BaseModel] | None]:
    """The FieldInfo for a validation error location, and the model that holds it."""
    model: Any = Settings
    info = None
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            break
        if not isinstance(part, str) or part not in model.model_fields:
            return None, model
        info = model.model_fields[part]
        holder = model
        model = _unwrap(info.annotation)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return info, holder
    return info, None


def _range(info: Any) -> tuple[Any, Any, Any, Any]:
    ge = le = gt = lt = None
    for m in getattr(info, "metadata", []):
        if isinstance(m, annotated_types.Ge):
            ge = m.ge
        elif isinstance(m, annotated_types.Le):
            le = m.le
        elif isinstance(m, annotated_types.Gt):
            gt = m.gt
        elif isinstance(m, annotated_types.Lt):
            lt = m.lt
    return ge, le, gt, lt


def _expectation(err: dict[str, Any], info: Any) -> str:
    typ = err["type"]
    extra = getattr(info, "json_schema_extra", None) or {}
    if isinstance(extra, dict) and "expect" in extra:
        return str(extra["expect"])
    if typ.startswith(("int_", "float_", "greater_", "less_")) or typ in ("finite_number",):
        annotation = _unwrap(getattr(info, "annotation", None))
        kind = "an integer" if annotation is int else "a number"
        ge, le, gt, lt = _range(info)
        if ge is not None and le is not None:
            return f"{kind} {ge}-{le}"
        bits = []
        if ge is not None:
            bits.append(f">= {ge}")
        if gt is not None:
            bits.append(f"> {gt}")
        if le is not None:
            bits.append(f"<= {le}")
        if lt is not None:
            bits.append(f"< {lt}")
        return f"{kind} {' and '.join(bits)}".strip()
    if typ.startswith("bool_"):
        return "true or false"
    if typ == "literal_error":
        return str(err.get("ctx", {}).get("expected", "")).replace("'", '"')
    if typ in ("string_type", "path_type"):
        return "a string" if typ == "string_type" else "a path (a string)"
    if typ == "string_too_short":
        return "a non-empty string"
    if typ in ("too_short", "too_long"):
        return "a list with " + err["msg"].split("List should have ", 1)[-1].split(" after", 1)[0]
    if typ == "list_type":
        return 'a list, e.g. ["zh", "en"]'
    if typ in ("dict_type", "model_type", "model_attributes_type"):
        return "a table (a [section] or { key = value })"
    if typ == "value_error":
        return err["msg"].removeprefix("Value error, ").removeprefix("expected ")
    return err["msg"][0].lower() + err["msg"][1:]


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return _printable(text)


def _printable(text: str) -> str:
    """One problem, one line: escape anything unprintable (line separators too), cut long text."""
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe(err: dict[str, Any]) -> str:
    key = _dotted(err["loc"])
    info, holder = _field_at(err["loc"])
    if err["type"] == "extra_forbidden":
        known = ", ".join(holder.model_fields) if holder is not None else ""
        return f"{key}: unknown key" + (f" (known keys here: {known})" if known else "")
    if err["type"] == "missing":
        return f"{key}: required key missing ({_expectation_for_missing(info)})"
    return f"{key}: expected {_expectation(err, info)}, got {_got(err.get('input'))}"


def _expectation_for_missing(info: Any) -> str:
    extra = getattr(info, "json_schema_extra", None) or {}
    desc = getattr(info, "description", None)
    example = extra.get("example") if isinstance(extra, dict) else None
    text = desc or "a value"
    if example is not None:
        text += f", e.g. {toml_value(example)}"
    return text


# --- config pushed by HR ----------------------------------------------------------------

# What HR may change remotely (`interview-hr publish-config`): behaviour, never where the
# device connects or who it is (a wrong broker pushed remotely would cut the device off).
PUSHABLE_SECTIONS = ("session", "retention")
# Where sync/cache.py keeps the verified downlink config: Store.cache_put(kind, key, ...).
PUSHED_CONFIG_KIND = "config"
PUSHED_CONFIG_KEY = "current"


def _pushed_label(version: int | None) -> str:
    return f"pushed config v{version}" if version is not None else "pushed config"


def check_overrides(overrides: Any, *, version: int | None = None) -> None:
    """Raise ConfigError unless ``overrides`` only sets keys of PUSHABLE_SECTIONS with values
    the schema accepts. Needs no device settings, so the HR connector checks with it too."""
    label = _pushed_label(version)
    if not isinstance(overrides, dict):
        raise ConfigError(label, [f"expected a table of sections, got {_got(overrides)}"])
    problems: list[str] = []
    for name, value in overrides.items():
        if name not in PUSHABLE_SECTIONS:
            problems.append(f"{_printable(str(name))}: cannot be set by pushed config "
                            f"(allowed sections: {', '.join(PUSHABLE_SECTIONS)})")
            continue
        model = _model_of(Settings.model_fields[name])
        assert model is not None
        try:
            # Every key of these sections has a default, so a partial section validates.
            model.model_validate(value)
        except ValidationError as e:
            problems += [_describe({**err, "loc": (name, *err["loc"])}) for err in e.errors()]
    if problems:
        raise ConfigError(label, problems)


def apply_overrides(settings: Settings, overrides: dict, *, version: int | None = None) -> Settings:
    """The settings with the pushed sections merged over them (pushed keys win, the rest
    stays the TOML file's); a new frozen Settings. Raises ConfigError naming
    ``pushed config v<version>: section.key: expected ...``."""
    check_overrides(overrides, version=version)
    merged = _merge_tables(settings.model_dump(mode="json"), overrides)
    try:
        # Paths in the dump are already absolute, so no base_dir is needed.
        return Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(_pushed_label(version), [_describe(err) for err in e.errors()]) from None


def _merge_tables(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        both = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = _merge_tables(out[k], v) if both else v
    return out


def overridden_keys(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the keys a pushed config sets, e.g. ["session.timeouts.help"]."""
    keys: list[str] = []
    for k, v in overrides.items():
        name = f"{prefix}.{k}" if prefix else str(k)
        keys += overridden_keys(v, name) if isinstance(v, dict) and v else [name]
    return keys


def pushed_config(store: Any) -> tuple[int, dict[str, Any]] | None:
    """(version, overrides) of the config HR pushed last, or None."""
    return store.cache_get(PUSHED_CONFIG_KIND, PUSHED_CONFIG_KEY)


def effective_settings(store: Any, settings: Settings) -> tuple[Settings, int | None]:
    """The TOML settings with HR's pushed config applied, and its version (None: none
    applies). A cached config that no longer validates (the schema changed with a software
    update) is ignored with a warning: the device keeps running on its TOML file."""
    try:
        row = pushed_config(store)
    except Exception as e:  # an unreadable cache must not stop the kiosk from starting
        log.warning("pushed config not read (%s): using the config file only", type(e).__name__)
        return settings, None
    if row is None:
        return settings, None
    version, overrides = row
    try:
        return apply_overrides(settings, overrides, version=version), version
    except ConfigError as e:
        log.warning("%s ignored, using the config file only: %s", _pushed_label(version),
                    "; ".join(e.problems))
        return settings, None


# --- the commented default config --------------------------------------------------------


def toml_value(v: Any) -> str:
    """One TOML value on one line (inline tables and arrays included)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML form for {type(v).__name__}")


class _Commented:
    """A value written commented out: the default a key would get, shown for reference."""

    def __init__(self, value: Any):
        self.value = value


def _model_of(info: Any) -> type[BaseModel] | None:
    ann = _unwrap(info.annotation)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _emit_section(
    lines: list[str],
    name: str,
    model: type[BaseModel],
    values: dict[str, Any] | None,
    commented: bool,
) -> None:
    """One [name] table with a comment per key; `values` None means an optional section left out."""
    c = "#" if commented else ""
    doc = (model.__doc__ or "").strip().splitlines()
    lines.append("")
    lines.extend(f"# {d.strip()}" for d in doc if d.strip())
    lines.append(f"{c}[{name}]")
    subsections = []
    for field, info in model.model_fields.items():
        sub = _model_of(info)
        if sub is not None:
            subsections.append((field, info, sub))
            continue
        lines.append(f"# {info.description}" + (" (required)" if info.is_required() else ""))
        value = (values or {}).get(field) if values is not None else None
        if value is None and not info.is_required():
            value = info.get_default(call_default_factory=True)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if isinstance(value, _Commented):
            lines.append(f"#{field} = {toml_value(value.value)}")
            continue
        if value is None:
            # No default (or an optional one): show an example, commented.
            example = extra.get("example")
            if example is not None:
                lines.append(f"#{field} = {toml_value(example)}")
            continue
        if commented and info.is_required() and "example" in extra:
            value = extra["example"]
        lines.append(f"{c}{field} = {toml_value(value)}")
    for field, info, sub in subsections:
        optional = not info.is_required() and info.get_default(call_default_factory=True) is None
        sub_values = (values or {}).get(field) if values is not None else None
        _emit_section(lines, f"{name}.{field}", sub, sub_values or {}, commented or optional)


def default_config_text(data_dir: Path, device_id: str) -> str:
    """The commented default config for a device, generated from the schema.

    Optional sections ([sync], [wecom]) are written commented out with example values:
    remove the leading `#` of the lines to enable them.
    """
    data_dir = Path(data_dir).absolute()
    values = {
        "device": {"id": device_id},
        "paths": {
            "data_dir": data_dir,
            "key_dir": _Commented(data_dir / "keys"),
            "media_dir": _Commented(data_dir / "media"),
            "models_dir": _Commented(data_dir / "models"),
        },
    }
    # Validate what we are about to write: a bad id fails here, not at the next start.
    settings_from_dict({"device": {"id": device_id}, "paths": {"data_dir": str(data_dir)}})
    lines = [
        "# Interview kiosk configuration.",
        "# Generated by `kiosk-provision init`. Every key is optional unless noted; the value",
        "# shown is the default. Secrets (keys, WeCom secret) live in the key directory,",
        "# never in this file. Lines starting with # are comments: remove the # to enable.",
    ]
    for field, info in Settings.model_fields.items():
        model = _model_of(info)
        assert model is not None
        optional = not info.is_required() and info.get_default(call_default_factory=True) is None
        _emit_section(lines, field, model, values.get(field, {}), commented=optional)
    return "\n".join(lines) + "\n"
