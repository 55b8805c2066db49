#!/bin/sh
# pytest.sh: the integration suite (real roomd, real clients) as one make-check entry.
# ROOMD_BIN points the suite at the binary this build made.
here=$(cd "$(dirname "$0")" && pwd)
: "${ROOMD_BIN:=$(pwd)/src/roomd}"
export ROOMD_BIN
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$here" "$@"
