#!/bin/bash
# package.sh WORKDIR: build the Debian package from this tree and try it on
# this machine, as root: dpkg-buildpackage -us -uc -b, lintian (no errors),
# dpkg -i, systemd-analyze verify of the installed unit, the installed roomd
# run as the roomd user with the installed config on a free loopback port
# until /healthz answers, and dpkg --purge leaving none of its files behind.
# Prints one line per step, "pkg_STEP: ok" or "pkg_STEP: FAILED (why)", with
# details above it; exits non-zero if a step failed. Refuses to touch a roomd
# package that was installed before it started.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: package.sh WORKDIR}
status=0
started=""

ok() { echo "pkg_$1: ok"; }
failed() { echo "pkg_$1: FAILED ($2)"; status=1; }

cleanup() {
	if [ -n "$started" ] && kill -0 "$started" 2>/dev/null; then
		kill -TERM "$started" 2>/dev/null
		sleep 2
		kill -KILL "$started" 2>/dev/null
	fi
}
trap cleanup EXIT

rm -rf "$work"
mkdir -p "$work/src" || exit 2
work=$(cd "$work" && pwd)
version=$(sed -n 's/^AC_INIT(\[roomd\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")
src="$work/src/roomd-$version"

# --- build: the tracked (and new, not ignored) files only, out of this tree.
mkdir -p "$src"
if [ -d "$top/.git" ] || [ -f "$top/.git" ]; then
	(cd "$top" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$src"
else
	(cd "$top" && tar --exclude=./build --exclude='./build-*' --exclude=node_modules -cf - .) | tar -xf - -C "$src"
fi
changelog=$(cd "$src" && dpkg-parsechangelog -S Version 2>/dev/null)
if [ "$changelog" != "$version" ]; then
	failed build "debian/changelog says $changelog, configure.ac $version"
elif (cd "$src" && dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1); then
	ok build
else
	tail -n 40 "$work/build.log"
	failed build "dpkg-buildpackage, see $work/build.log"
fi
deb=$(ls "$work"/src/roomd_"$version"_*.deb 2>/dev/null | head -n 1)
changes=$(ls "$work"/src/roomd_"$version"_*.changes 2>/dev/null | head -n 1)
if [ -z "$deb" ]; then
	echo "pkg_lintian: FAILED (no package)"
	echo "pkg_install: FAILED (no package)"
	exit 1
fi
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb" | awk '{print $1, $6, $7, $8}'

# --- lintian, as nobody (as lintian asks), on a copy it can read: every
# tag shown, overrides included; an error fails the step.
lint=$(mktemp -d /tmp/roomd-lintian.XXXXXX)
cp "$work"/src/roomd*_"$version"_* "$lint/"
chown -R nobody:nogroup "$lint"
if setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$lint" TMPDIR="$lint" \
    lintian --fail-on error --display-info --show-overrides "$lint/$(basename "$changes")" \
    >"$work/lintian.out" 2>&1; then
	cat "$work/lintian.out"
	ok lintian
else
	cat "$work/lintian.out"
	failed lintian "lintian reports errors"
fi
rm -rf "$lint"

# --- install: what the package puts where, and the user it makes.
case $(dpkg-query -W -f='${db:Status-Abbrev}' roomd 2>/dev/null) in
"" | un*) ;;
*)	failed install "a roomd package is on this machine already; dpkg --purge roomd first"
	exit 1 ;;
esac
# Paths named roomd anywhere the package could leave one; not dpkg's own
# records, nor man-db's cache of formatted pages (man(1) writes it when
# systemd-analyze verify reads the unit's Documentation=; man-db expires it).
snapshot() {
	find /etc /usr /var /lib /opt /run -xdev -iname '*roomd*' 2>/dev/null |
	    grep -Ev '^/var/lib/dpkg/|^/var/cache/man/' | sort
}
snapshot >"$work/before.txt"
if ! dpkg -i "$deb" >"$work/install.log" 2>&1; then
	cat "$work/install.log"
	failed install "dpkg -i"
else
	why=""
	for f in /usr/sbin/roomd /usr/bin/roomd-bench /etc/roomd/roomd.conf /lib/systemd/system/roomd.service \
	    /etc/logrotate.d/roomd /usr/share/roomd/www/index.html /usr/share/roomd/www/roomd-client.js \
	    /usr/share/man/man8/roomd.8.gz \
	    /usr/share/man/man5/roomd.conf.5.gz /usr/share/man/man7/roomd-protocol.7.gz \
	    /usr/share/man/man7/roomd-api.7.gz \
	    /usr/share/man/man1/roomd-bench.1.gz; do
		[ -e "$f" ] || why="$why missing $f;"
	done
	getent passwd roomd >/dev/null || why="$why no roomd user;"
	[ "$(stat -c %U:%G "/var/log/roomd" 2>/dev/null)" = roomd:adm ] || why="$why /var/log/roomd not roomd:adm;"
	dpkg-query -W -f='${Conffiles}\n' roomd | grep -q '^ /etc/roomd/roomd.conf ' || why="$why roomd.conf no conffile;"
	cmp -s /etc/roomd/roomd.conf "$top/conf/roomd.conf" || why="$why roomd.conf differs from conf/roomd.conf;"
	/usr/sbin/roomd -v | grep -q 'libsystemd [0-9]' || why="$why roomd -v names no libsystemd;"
	logrotate -d /etc/logrotate.d/roomd >"$work/logrotate.out" 2>&1 || { cat "$work/logrotate.out"; why="$why logrotate -d;"; }
	if [ -n "$why" ]; then failed install "$why"; else ok install; fi
fi

# --- the unit, as installed (its commands and man pages exist now).
if out=$(systemd-analyze verify /lib/systemd/system/roomd.service 2>&1) && [ -z "$out" ]; then
	echo "systemd-analyze verify roomd.service: clean"
	ok unit
else
	printf '%s\n' "$out"
	failed unit "systemd-analyze verify"
fi

# --- run it: the roomd user, the installed config, a free loopback port.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_roomd="setpriv --reuid=roomd --regid=roomd --init-groups"
if ! (cd / && $as_roomd /usr/sbin/roomd -t -c /etc/roomd/roomd.conf) >"$work/run.log" 2>&1; then
	cat "$work/run.log"
	failed healthz "roomd -t as the roomd user"
else
	(cd / && exec $as_roomd /usr/sbin/roomd -c /etc/roomd/roomd.conf -l "127.0.0.1:$port") \
	    >>"$work/run.log" 2>&1 &
	started=$!
	body=""
	for _ in $(seq 1 100); do
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" 2>/dev/null) && break
		kill -0 "$started" 2>/dev/null || break
		sleep 0.1
	done
	page=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null | grep -c '</html>')
	kill -TERM "$started" 2>/dev/null
	wait "$started"
	rc=$?
	started=""
	cat "$work/run.log"
	if [ "$body" != ok ]; then
		failed healthz "/healthz answered '$body'"
	elif [ "$page" != 1 ]; then
		failed healthz "GET / did not serve the page from /usr/share/roomd/www"
	elif [ "$rc" != 0 ]; then
		failed healthz "roomd exited with $rc after SIGTERM"
	elif grep -qE '\[(alert|error)\]' "$work/run.log"; then
		failed healthz "errors in its log"
	else
		echo "GET /healthz on 127.0.0.1:$port: $body"
		ok healthz
	fi
fi

# --- purge: nothing of it left (the roomd account stays, by Debian practice).
if dpkg-query -W roomd >/dev/null 2>&1; then
	dpkg-query -L roomd >"$work/files.txt" 2>/dev/null
	if ! dpkg --purge roomd >"$work/purge.log" 2>&1; then
		cat "$work/purge.log"
		failed purge "dpkg --purge"
	else
		left=""
		while read -r f; do
			[ -d "$f" ] && continue
			[ -e "$f" ] || [ -L "$f" ] && left="$left $f"
		done <"$work/files.txt"
		for d in /etc/roomd /var/log/roomd /usr/share/roomd /usr/share/doc/roomd /run/roomd; do
			[ -e "$d" ] && left="$left $d"
		done
		snapshot >"$work/after.txt"
		left="$left $(comm -13 "$work/before.txt" "$work/after.txt" | tr '\n' ' ')"
		dpkg-query -W roomd >/dev/null 2>&1 && left="$left (dpkg still knows roomd)"
		if [ -n "${left// /}" ]; then
			failed purge "left behind:$left"
		else
			echo "purged; the roomd account stays: $(getent passwd roomd)"
			ok purge
		fi
	fi
else
	failed purge "nothing installed to purge"
fi
exit $status
