#!/usr/bin/env bash
# Builds the installable image: one PyInstaller one-folder bundle holding the three device
# programs (interview-kiosk, interview-sync, kiosk-provision) and a Debian package with
# the bundle, the systemd units, the default config and a postinst that creates the kiosk
# user and data directory. Versioned <pyproject version>+g<git short hash>.
#
#   ./build_image.sh            (or `make image`)  ->  dist/interview-kiosk_<version>_<arch>.deb
#
# Needs the project's .venv (make deps) and dpkg-deb; installs PyInstaller from the
# project's `image` extra. Prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$PWD
PY=${PY:-$REPO/.venv/bin/python}
BUILD=$REPO/build/image
DIST=$REPO/dist
PREFIX=/opt/interview-kiosk

t0=$(date +%s)
stage() { echo "== $* ($(( $(date +%s) - t0 )) s)"; }

[ -x "$PY" ] || { echo "build_image.sh: no $PY; run 'make deps' first" >&2; exit 2; }
command -v dpkg-deb >/dev/null || { echo "build_image.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 2; }

stage "installing PyInstaller (extra 'image')"
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
    "$PY" -m pip install -q -e "$REPO[image]"
fi

PYVER=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
VERSION="$PYVER+g$COMMIT"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    VERSION="$VERSION.dirty"
fi
ARCH=$(dpkg --print-architecture)
DEB=$DIST/interview-kiosk_${VERSION}_${ARCH}.deb
echo "version $VERSION ($ARCH)"

rm -rf "$BUILD"
mkdir -p "$BUILD" "$DIST"
"$PY" - "$BUILD/build-info.json" "$VERSION" "$COMMIT" <<'PYEOF'
import json, sys, time
out, version, commit = sys.argv[1:4]
json.dump({"version": version, "commit": commit,
           "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, open(out, "w"))
PYEOF

stage "PyInstaller bundle"
BUILD_INFO="$BUILD/build-info.json" "$PY" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$BUILD/dist" --workpath "$BUILD/work" \
    packaging/pyinstaller/interview-kiosk.spec
BUNDLE=$BUILD/dist/interview-kiosk
for prog in interview-kiosk interview-sync kiosk-provision; do
    [ -x "$BUNDLE/$prog" ] || { echo "build_image.sh: $prog missing from the bundle" >&2; exit 1; }
done
"$BUNDLE/kiosk-provision" --version

stage "package tree"
ROOT=$BUILD/root
mkdir -p "$ROOT/DEBIAN" "$ROOT/opt" "$ROOT/usr/bin" "$ROOT/lib/systemd/system" \
         "$ROOT/usr/share/interview-kiosk" "$ROOT/usr/share/doc/interview-kiosk"
cp -a "$BUNDLE" "$ROOT$PREFIX"
for prog in interview-kiosk interview-sync kiosk-provision; do
    ln -s "$PREFIX/$prog" "$ROOT/usr/bin/$prog"
done
install -m 0644 systemd/interview-kiosk.service systemd/interview-sync.service \
    systemd/interview-retention.service systemd/interview-retention.timer "$ROOT/lib/systemd/system/"
install -m 0644 systemd/interview-kiosk.service.d/cage.conf.example "$ROOT/usr/share/interview-kiosk/"
"$PY" -c 'import sys; from pathlib import Path; from device.config import default_config_text
sys.stdout.write(default_config_text(Path("/var/lib/interview-kiosk"), "kiosk-CHANGE-ME"))' \
    > "$ROOT/usr/share/interview-kiosk/config.default.toml"
cp -a examples "$ROOT/usr/share/interview-kiosk/examples"
find "$ROOT/usr/share/interview-kiosk/examples" -name '*.py' -delete
install -m 0644 README.md "$ROOT/usr/share/doc/interview-kiosk/README.md"
[ -d docs ] && cp -a docs "$ROOT/usr/share/doc/interview-kiosk/docs"
printf '%s\n' "$VERSION" > "$ROOT/usr/share/interview-kiosk/VERSION"

SIZE_KB=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE_KB@/$SIZE_KB/" \
    packaging/debian/control.in > "$ROOT/DEBIAN/control"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$ROOT/DEBIAN/"

stage "dpkg-deb"
rm -f "$DIST"/interview-kiosk_*.deb
# zstd: a fraction of xz's time on 2 cores for ~the same size; Debian 12's dpkg reads it.
dpkg-deb --root-owner-group -Zzstd -z3 --build "$ROOT" "$DEB" >/dev/null
stage "done"
ls -l "$DEB"
echo "bundle: $(du -sh "$BUNDLE" | cut -f1), package: $(du -sh "$DEB" | cut -f1)"
echo "$DEB"
