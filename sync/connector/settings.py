"""The connector's settings: one typed TOML schema (``interview-hr --config``), with errors
that name the file and key. Secrets (webhook secret, signing key, DB key) live in files the
settings point to, never in the settings themselves."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConnectorConfigError(Exception):
    """A connector config file that cannot be used; one line per problem."""


class _S(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConnectorSection(_S):
    name: str = Field("hr-connector", description="MQTT client id; also the CN of its certificate")
    data_dir: Path = Field(Path("/var/lib/interview-hr"), description="Database, clips and keys")
    db_url: str | None = Field(
        None,
        description="sqlite:///path (default <data_dir>/hr.db, encrypted) or postgresql://…",
    )


class MqttClientSection(_S):
    host: str = Field("127.0.0.1", description="Broker host")
    port: int = Field(8883, ge=1, le=65535, description="Broker TLS port")
    ca_file: Path = Field(description="Site CA certificate")
    cert_file: Path = Field(description="This connector's client certificate (CN = name)")
    key_file: Path = Field(description="This connector's client key")
    share_group: str = Field(
        "hr",
        pattern=r"^[A-Za-z0-9_.\-]*$",
        description='Shared subscription group; connectors in one group share the load. "" = a plain '
        "subscription (one connector; survives a mosquitto restart while the connector is down)",
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive")
    session_expiry_s: int = Field(7 * 86400, ge=0, description="Broker keeps our queue this long while we are down")


class HttpsServerSection(_S):
    listen_host: str = Field("0.0.0.0", description="Address the HTTPS endpoint listens on")
    port: int = Field(8443, ge=0, le=65535, description="Port (0 = any free port)")
    ca_file: Path = Field(description="CA that issued the devices' client certificates")
    cert_file: Path = Field(description="Server certificate")
    key_file: Path = Field(description="Server key")
    max_chunk_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest clip chunk accepted")
    max_clip_bytes: int = Field(2 * 1024 * 1024 * 1024, gt=0, description="Largest clip accepted")
    max_record_bytes: int = Field(4 * 1024 * 1024, gt=0, description="Largest result/event body")


class WebhookSection(_S):
    url: str | None = Field(None, description="EHR endpoint to POST records to (none = store only)")
    secret_file: Path | None = Field(None, description="File holding the HMAC-SHA256 secret")
    timeout_s: float = Field(10, gt=0, description="Per-request timeout")
    max_backoff_s: float = Field(60, gt=0, description="Longest wait between retries")
    ca_file: Path | None = Field(None, description="CA for an https:// webhook with a private CA")


class SigningSection(_S):
    private_key_file: Path | None = Field(None, description="Ed25519 key that signs downlink messages")
    tenant: str = Field("default", description="Tenant the devices publish under")
    validity_days: int = Field(30, gt=0, description="Downlink messages expire after this many days")
    clip_key_file: Path | None = Field(
        None, description="HR's X25519 clip key (private; `interview-hr clip-key`): decrypts "
        "answer clips; its public half goes to devices in the enrolment bundle")


class AlarmsSection(_S):
    heartbeat_stale_s: float = Field(300, gt=0, description="Alarm when no heartbeat for this long")
    undelivered_max_age_s: float = Field(1800, gt=0, description="Alarm when a device's oldest undelivered record is older")
    check_interval_s: float = Field(30, gt=0, description="How often devices are checked")


class EnrolSection(_S):
    ca_cert_file: Path | None = Field(None, description="Site CA certificate that signs device certificates")
    ca_key_file: Path | None = Field(None, description="Site CA key (keep it on the HR side only)")
    mqtt_host: str | None = Field(None, description="Broker host name as the devices reach it")
    mqtt_port: int = Field(8883, ge=1, le=65535, description="Broker port as the devices reach it")
    https_base_url: str | None = Field(None, description="This connector's URL as the devices reach it, e.g. https://hr.example/kiosk/v1")
    company_name: str | None = Field(None, description="Shown on the kiosk")
    cert_days: int = Field(825, gt=0, description="Device certificate lifetime")


class RelaySection(_S):
    """WeCom sign-in relay: where phones cannot reach the kiosks, WeCom redirects here and
    the connector forwards code+state to the kiosk as a signed ``down/command``."""

    redirect_uri: str = Field(description="The WeCom app's redirect URI (served here)")
    listen_host: str = Field("0.0.0.0", description="Address to listen on")
    port: int = Field(8444, ge=0, le=65535, description="Port (0 = any free port)")
    cert_file: Path | None = Field(None, description="TLS certificate (HTTPS when set)")
    key_file: Path | None = Field(None, description="TLS key")


class ConnectorSettings(_S):
    connector: ConnectorSection = ConnectorSection()
    mqtt: MqttClientSection | None = None
    https: HttpsServerSection | None = None
    webhook: WebhookSection = WebhookSection()
    signing: SigningSection = SigningSection()
    alarms: AlarmsSection = AlarmsSection()
    enrol: EnrolSection = EnrolSection()
    relay: RelaySection | None = None

    @property
    def db_url(self) -> str:
        return self.connector.db_url or f"sqlite:///{self.connector.data_dir / 'hr.db'}"


def load_connector_settings(path: Path) -> ConnectorSettings:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConnectorConfigError(f"{path}: not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConnectorConfigError(f"{path}: not valid TOML: {e}") from e
    try:
        return ConnectorSettings.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            got = err.get("input")
            lines.append(f"{path}: {key}: {err['msg']}" + ("" if isinstance(got, dict) else f", got {got!r}"))
        raise ConnectorConfigError("\n".join(lines)) from e
