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
# ROOMD_DIST_QUICK=1 (tests/run.sh's distcheck, after the whole suite ran on
# the same sources twice): check that the tarball holds what the suite needs
# (every test module collects) and run the quick tests, not all of them again.
if [ "${ROOMD_DIST_QUICK:-0}" = 1 ]; then
	/usr/bin/python3 -m pytest -q -p no:cacheprovider --collect-only --ignore="$here/lab" "$here" >/dev/null ||
		exit 1
	exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$here/test_smoke.py" "$here/test_docs.py" \
		"$here/test_static.py" "$here/test_tutorial_clients.py" "$@"
fi
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider --ignore="$here/lab" "$here" "$@"
