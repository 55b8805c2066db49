#!/bin/bash
# run.sh: roomd's whole test suite, the command README.md gives and .ci/run calls.
#
# Builds roomd out of tree twice -- with -Werror, and with ASan+UBSan -- and in
# each runs the C unit tests (TAP) and the integration suite (pytest, the real
# binary with real clients); runs the performance guard (callgrind
# instruction counts against tests/perf/baseline.txt) on the first build;
# builds once more without libsystemd; then runs each libFuzzer target of
# tests/fuzz (every parser of untrusted input: frames, HTTP, PROXY, JWT, chat
# JSON, static paths, config) for FUZZ_SECONDS, checks `make distcheck`, and
# builds, lints, installs, runs and purges the Debian package
# (tests/package.sh, as root). Ends with one line "N passed, N failed" that
# counts every test it ran.
#
# The deployment lab (tests/lab: network namespaces, HAProxy, three roomd
# hosts, a Sentinel set; several minutes, needs root) runs in the ASan pass
# only: its faults (a Redis link cut under load, drains, a binary upgrade,
# failovers) take paths no other test takes, which is where ASan finds what
# it finds, and running it twice would take the whole run past its budget.
# LAB_IN_NORMAL=1 runs it in the normal pass too.
#
# Env: BUILD_ROOT (default: build/ in the source tree), FUZZ_SECONDS (30 per
#      target; eight targets make about four and a half minutes),
#      SKIP_SANITIZERS=1 / SKIP_PERF=1 / SKIP_FUZZ=1 / SKIP_DISTCHECK=1 /
#      SKIP_PACKAGE=1 for quick local runs.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
root=${BUILD_ROOT:-$top/build}
fuzz_seconds=${FUZZ_SECONDS:-30}
mkdir -p "$root"
pass=0
fail=0
failed_names=()

note() { printf '\n=== %s\n' "$*"; }
record() { # name, passed count, failed count
	pass=$((pass + $2))
	fail=$((fail + $3))
	[ "$3" -eq 0 ] || failed_names+=("$1 ($3)")
}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh) || { echo "autogen failed"; echo "0 passed, 1 failed"; exit 1; }

# build DIR [configure flags]: configure and make; counts as one test.
build() {
	local dir=$1; shift
	note "build $dir ($*)"
	mkdir -p "$dir"
	if (cd "$dir" && "$top/configure" --enable-werror "$@" >configure.out 2>&1 &&
	    make -j2 >make.out 2>&1 && make -j2 check TESTS= >>make.out 2>&1); then
		record "build $(basename "$dir")" 1 0
		return 0
	fi
	tail -n 40 "$dir/configure.out" "$dir/make.out"
	record "build $(basename "$dir")" 0 1
	return 1
}

# unit DIR: run every C unit program; count TAP lines.
unit() {
	local dir=$1 t out p f
	note "unit tests in $dir"
	for t in "$dir"/tests/unit/test_*; do
		[ -x "$t" ] && [ ! -d "$t" ] || continue
		out=$("$t" 2>&1)
		rc=$?
		p=$(printf '%s\n' "$out" | grep -c '^ok ')
		f=$(printf '%s\n' "$out" | grep -c '^not ok ')
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
		printf '%s: %d passed, %d failed\n' "$(basename "$t")" "$p" "$f"
		[ "$f" -eq 0 ] || printf '%s\n' "$out" | grep -A3 '^not ok' | head -40
		record "$(basename "$t") in $(basename "$dir")" "$p" "$f"
	done
}

# integration DIR LABEL [extra env...]: pytest against DIR's binary; counts from junit xml.
integration() {
	local dir=$1 label=$2; shift 2
	local xml="$root/pytest-$label.xml"
	note "integration tests ($label)"
	rm -f "$xml"
	env ROOMD_BIN="$dir/src/roomd" "$@" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		--junitxml="$xml" -o junit_family=xunit2 ${PYTEST_EXTRA:-} "$top/tests"
	if [ ! -f "$xml" ]; then
		record "pytest $label" 0 1
		return
	fi
	read -r t f e s < <(/usr/bin/python3 -c '
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
ts = r if r.tag == "testsuite" else r.find("testsuite")
print(ts.get("tests"), ts.get("failures"), ts.get("errors"), ts.get("skipped"))' "$xml")
	# A skipped test is a test that did not run: count it as failed.
	record "pytest $label" $((t - f - e - s)) $((f + e + s))
}

note "layers: calls in src/ go one way (tests/layers.py)"
if /usr/bin/python3 "$top/tests/layers.py" "$top/src"; then
	record "layers" 1 0
else
	record "layers" 0 1
fi

# perf DIR: the performance guard against DIR's roomd, one test per scenario
# (tests/perf/guard.py says how it counts and how to update the baseline).
perf() {
	local dir=$1 out rc p f
	note "performance guard (callgrind instructions per operation, at most 5 % over the baseline)"
	out=$(ROOMD_BIN="$dir/src/roomd" timeout -k 10 1200 /usr/bin/python3 "$top/tests/perf/guard.py" 2>&1)
	rc=$?
	printf '%s\n' "$out"
	p=$(printf '%s\n' "$out" | grep -cE '^perf [a-z0-9_]+: .*: ok')
	f=$(printf '%s\n' "$out" | grep -cE '^perf [a-z0-9_]+: .*FAIL')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	record "perf" "$p" "$f"
}

ok_build=0
build "$root/normal" && ok_build=1
if [ "$ok_build" = 1 ]; then
	unit "$root/normal"
	if [ "${LAB_IN_NORMAL:-0}" = 1 ] || [ "${SKIP_SANITIZERS:-0}" = 1 ]; then
		integration "$root/normal" normal
	else
		PYTEST_EXTRA="--ignore=$top/tests/lab" integration "$root/normal" normal
	fi
	[ "${SKIP_PERF:-0}" = 1 ] || perf "$root/normal"
fi

# Without libsystemd the notify calls compile to nothing: that must build too.
build "$root/nosystemd" --without-systemd --disable-lto

if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then
	if build "$root/asan" --enable-sanitizers; then
		san_logs="$root/asan/sanitizer-logs"
		rm -rf "$san_logs"; mkdir -p "$san_logs"
		export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:log_path=$san_logs/asan"
		export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$san_logs/ubsan"
		unit "$root/asan"
		integration "$root/asan" asan ROOMD_SANITIZED=1
		unset ASAN_OPTIONS UBSAN_OPTIONS
		note "sanitizer reports"
		if ls "$san_logs"/* >/dev/null 2>&1; then
			head -n 60 "$san_logs"/*
			record "no sanitizer reports" 0 1
		else
			echo "none"
			record "no sanitizer reports" 1 0
		fi
	fi
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
	note "fuzzing ${fuzz_seconds}s per target"
	if [ -x "$top/tests/fuzz/run.sh" ]; then
		fz_out=$(FUZZ_WORK="$root/fuzz" "$top/tests/fuzz/run.sh" "$fuzz_seconds" 2>&1)
		printf '%s\n' "$fz_out" | grep -E '^fuzz_' || printf '%s\n' "$fz_out" | tail -n 40
		record "fuzz" "$(printf '%s\n' "$fz_out" | grep -cE '^fuzz_[a-z_]+: ok')" \
			"$(printf '%s\n' "$fz_out" | grep -cE '^fuzz_[a-z_]+: (FAIL|CRASH|error)')"
	fi
fi

if [ "${SKIP_DISTCHECK:-0}" != 1 ] && [ "$ok_build" = 1 ]; then
	note "make distcheck (tarball builds and passes make check)"
	# npm packages cannot be in the tarball: point its tests at ours.
	if (cd "$root/normal" && ROOMD_NODE_MODULES="$top/tests/node/node_modules" \
	    ROOMD_BROWSER_MODULES="$top/tests/browser/node_modules" \
	    ROOMD_JS_MODULES="$top/clients/js/node_modules" \
	    ROOMD_TEST_OUT="$root/distcheck-out" make distcheck >distcheck.out 2>&1); then
		record "distcheck" 1 0
	else
		tail -n 60 "$root/normal/distcheck.out"
		record "distcheck" 0 1
	fi
fi

if [ "${SKIP_PACKAGE:-0}" != 1 ]; then
	note "Debian package: build, lintian, install, unit, healthz, purge"
	pk_steps=6
	if [ "$(id -u)" != 0 ]; then
		echo "tests/package.sh installs a package: run as root"
		record "package" 0 "$pk_steps"
	else
		pk_out=$(bash "$top/tests/package.sh" "$root/pkg" 2>&1)
		printf '%s\n' "$pk_out"
		p=$(printf '%s\n' "$pk_out" | grep -cE '^pkg_[a-z]+: ok$')
		f=$(printf '%s\n' "$pk_out" | grep -cE '^pkg_[a-z]+: FAILED')
		# A step that printed nothing did not pass.
		[ $((p + f)) -ge "$pk_steps" ] || f=$((pk_steps - p))
		record "package" "$p" "$f"
	fi
fi

note "summary"
for n in "${failed_names[@]}"; do echo "FAILED: $n"; done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
