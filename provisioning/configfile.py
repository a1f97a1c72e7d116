"""Change keys in the commented config file without losing its comments or hand edits.

`init` writes the commented default; `enrol` and `models install` later set a few keys,
uncommenting a section where needed. The result is validated against the schema before
it replaces the file, so a bad change never leaves a broken config. Never writes secrets.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any

from device.config import ConfigError, Settings, settings_from_dict, toml_value

_HEADER = re.compile(r"^\s*(#\s*)?\[([A-Za-z0-9_.\-]+)\]\s*(#.*)?$")


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(#\s*)?{re.escape(key)}\s*=")


def _span(lines: list[str], header: int) -> int:
    """Index one past the last line of the section starting at `header`."""
    for i in range(header + 1, len(lines)):
        if _HEADER.match(lines[i]):
            return i
    return len(lines)


def _value_end(lines: list[str], i: int) -> int:
    """One past the last line of the (uncommented) assignment at i: arrays may span lines."""
    for j in range(i + 1, min(len(lines), i + 200) + 1):
        try:
            tomllib.loads("\n".join(lines[i:j]))
            return j
        except tomllib.TOMLDecodeError:
            continue
    return i + 1


def patch_text(text: str, changes: dict[str, dict[str, Any]]) -> str:
    """Apply {section: {key: value}}; value None comments the key out (back to its default)."""
    lines = text.splitlines()
    for section, values in changes.items():
        header = next(
            (i for i, line in enumerate(lines)
             if (m := _HEADER.match(line)) and m.group(2) == section and not m.group(1)),
            None,
        )
        if header is None:
            header = next(
                (i for i, line in enumerate(lines)
                 if (m := _HEADER.match(line)) and m.group(2) == section),
                None,
            )
            if header is not None:
                lines[header] = f"[{section}]"
        if header is None:
            if lines and lines[-1].strip():
                lines.append("")
            lines.append(f"[{section}]")
            header = len(lines) - 1
        for key, value in values.items():
            end = _span(lines, header)
            pattern = _key_line(key)
            found = [i for i in range(header + 1, end) if pattern.match(lines[i])]
            active = [i for i in found if not lines[i].lstrip().startswith("#")]
            if value is None:
                for i in active:
                    lines[i] = "#" + lines[i].lstrip()
                continue
            new = f"{key} = {toml_value(value)}"
            if active:
                i = active[0]
                lines[i:_value_end(lines, i)] = [new]
            elif found:
                lines[found[-1]] = new
            else:
                lines.insert(header + 1, new)
    return "\n".join(lines) + "\n"


def update_config(path: Path, changes: dict[str, dict[str, Any]]) -> Settings:
    """Patch the config file at path, validate the result, then replace the file atomically.

    Raises ConfigError (file untouched) when the patched config would not load.
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8")
    new = patch_text(old, changes)
    try:
        data = tomllib.loads(new)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [f"the change would make invalid TOML: {e}"]) from None
    settings = settings_from_dict(data, path=path)
    mode = path.stat().st_mode & 0o7777
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return settings
