#!/bin/sh
# install-deps.sh: everything roomd needs to build and to run its whole test
# suite on Debian 12, from Debian's packages and (for the Node ws client) npm;
# debhelper, lintian, systemd (for systemd-analyze) and man-db (the unit's
# Documentation=) are for the Debian package job (tests/package.sh).
# It installs as root; run by another user it asks sudo for that.
set -eu
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		exec sudo "$0" "$@"
	fi
	echo "install-deps.sh: installing packages needs root, and sudo is not installed" >&2
	exit 1
fi
top=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	build-essential autoconf automake pkg-config ca-certificates \
	libevent-dev libjson-c-dev libhiredis-dev libssl-dev zlib1g-dev libsystemd-dev \
	redis-server redis-sentinel haproxy logrotate \
	python3 python3-pytest python3-websockets python3-prometheus-client \
	mandoc groff-base clang libclang-rt-14-dev valgrind procps iproute2 curl \
	chromium fonts-dejavu-core \
	debhelper dpkg-dev lintian adduser systemd man-db
# Node.js for the `ws` client tests: keep a newer node if one is installed.
command -v node >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends nodejs npm
# The Node `ws` clients, playwright-core (which drives Debian's chromium) and
# TypeScript (which checks roomd-client's declarations).
for d in tests/node tests/browser clients/js; do
	if [ -f "$top/$d/package-lock.json" ]; then
		(cd "$top/$d" && npm ci --no-audit --no-fund --loglevel=error)
	fi
done
