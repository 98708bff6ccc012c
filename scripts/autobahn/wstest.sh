#!/usr/bin/env bash
# Runs wstest from $AUTOBAHN_HOME (installed by install.sh); arguments pass through.
set -euo pipefail
HOME_DIR="${AUTOBAHN_HOME:-$HOME/.cache/autobahn-py27}"
if [ ! -x "$HOME_DIR/root/usr/bin/python2.7" ]; then
  echo "wstest is not installed (scripts/autobahn/install.sh)" >&2
  exit 2
fi
HOME_DIR="$(cd "$HOME_DIR" && pwd)"
export LD_LIBRARY_PATH="$HOME_DIR/root/usr/lib/x86_64-linux-gnu:$HOME_DIR/root/lib/x86_64-linux-gnu"
export PYTHONHOME="$HOME_DIR/root/usr"
unset PYTHONPATH
# site.addsitedir, not PYTHONPATH: the zope.* namespace packages need their .pth files read.
exec "$HOME_DIR/root/usr/bin/python2.7" -c "import site, sys; site.addsitedir('$HOME_DIR/site'); \
sys.argv[0] = 'wstest'; from autobahntestsuite.wstest import run; sys.exit(run())" "$@"
