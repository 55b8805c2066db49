#!/bin/sh
# pytest.sh: the integration suite (real roomd, real clients) as one make-check entry.
# ROOMD_BIN points the suite at the binary this build made.
here=$(cd "$(dirname "$0")" && pwd)
: "${ROOMD_BIN:=$(pwd)/src/roomd}"
export ROOMD_BIN
# Test artifacts (failure screenshots) go to the build tree: the source tree may be read-only.
: "${ROOMD_TEST_OUT:=$(pwd)/tests/out}"
export ROOMD_TEST_OUT
# The deployment lab (tests/lab) needs root for its network namespaces and
# runs from tests/run.sh, not from `make check`.
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider --ignore="$here/lab" "$here" "$@"
