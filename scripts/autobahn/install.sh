#!/usr/bin/env bash
# Installs the Autobahn Testsuite's fuzzing client (wstest) into $AUTOBAHN_HOME (default
# ~/.cache/autobahn-py27), outside the repository; idempotent.
#
# autobahntestsuite (25.10.1 on PyPI) is Python 2.7 code, and Debian bookworm ships no Python 2.
# So: CPython 2.7 from Debian bullseye's packages, fetched from the mirror this machine already
# uses and unpacked with `dpkg -x` (nothing is installed system-wide), pip 20.3.4 (the last for
# 2.7) from PyPI, then the suite with its pinned dependencies. Needs apt-get, dpkg, gcc, python3.
set -euo pipefail
HOME_DIR="${AUTOBAHN_HOME:-$HOME/.cache/autobahn-py27}"
mkdir -p "$HOME_DIR"
HOME_DIR="$(cd "$HOME_DIR" && pwd)"
ROOT="$HOME_DIR/root"
SITE="$HOME_DIR/site"

if [ -x "$ROOT/usr/bin/python2.7" ] && [ -d "$SITE/autobahntestsuite" ]; then
  exit 0
fi

if [ ! -x "$ROOT/usr/bin/python2.7" ]; then
  APT="$HOME_DIR/apt"
  mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$HOME_DIR/debs" "$ROOT"
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bullseye main" \
    > "$APT/sources.list"
  apt_private=(-o "Dir::Etc::sourcelist=$APT/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o "Dir::State::lists=$APT/lists" -o "Dir::Cache=$APT" -o "Dir::Cache::archives=$APT/archives")
  apt-get "${apt_private[@]}" update -qq
  # libssl1.1 and libffi7 are bullseye's; bookworm has newer sonames only.
  (cd "$HOME_DIR/debs" && apt-get "${apt_private[@]}" download python2.7 python2.7-minimal \
    python2.7-dev libpython2.7 libpython2.7-stdlib libpython2.7-minimal libpython2.7-dev \
    libssl1.1 libffi7)
  for deb in "$HOME_DIR"/debs/*.deb; do dpkg -x "$deb" "$ROOT"; done
fi

python27() {
  LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu" \
    PYTHONHOME="$ROOT/usr" PYTHONPATH="$SITE" "$ROOT/usr/bin/python2.7" "$@"
}

WHEELS="$HOME_DIR/wheels"
PIP_WHEEL="$WHEELS/pip-20.3.4-py2.py3-none-any.whl"
mkdir -p "$WHEELS" "$SITE"
[ -f "$PIP_WHEEL" ] || python3 -m pip download -q --no-deps pip==20.3.4 -d "$WHEELS"
# A wheel is a zip: pip runs from inside it to install itself.
[ -d "$SITE/pip" ] || python27 "$PIP_WHEEL/pip" install -q --no-warn-script-location \
  --target "$SITE" "$PIP_WHEEL"
# setuptools and wheel for the sdists (txaio, wsaccel): the last releases for Python 2.7.
[ -d "$SITE/setuptools" ] || python27 -m pip install -q --no-warn-script-location \
  --target "$SITE" setuptools==44.1.1 wheel==0.37.1
CFLAGS="-I$ROOT/usr/include/python2.7 -I$ROOT/usr/include" \
  python27 -m pip install -q --no-warn-script-location --target "$SITE" autobahntestsuite==25.10.1
"$(dirname "${BASH_SOURCE[0]}")/wstest.sh" --autobahnversion
