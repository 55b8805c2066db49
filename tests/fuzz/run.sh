#!/bin/sh
# run.sh [SECONDS]: build the libFuzzer targets (ASan + UBSan) and run each
# for SECONDS (default 60) on a scratch copy of its seed corpus; the repo's
# corpus is never grown. Prints one line per target ("fuzz_x: ok (N runs in
# S s)" or "fuzz_x: FAILED ..."); exits non-zero if any target crashes,
# leaks, trips a sanitizer or fails to build.
# Env: CC_FUZZ (clang), FUZZ_WORK (a work directory to keep; default: a
# temporary one, removed at exit).
set -u

secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cc=${CC_FUZZ:-clang}
if [ -n "${FUZZ_WORK:-}" ]; then
	work=$FUZZ_WORK
	rm -rf "$work/corpus_fuzz_"* "$work/artifacts_fuzz_"*
	mkdir -p "$work" || exit 2
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/roomd-fuzz.XXXXXX")
	trap 'rm -rf "$work"' EXIT INT TERM
fi

cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE -I $top/src"
libs=$(pkg-config --cflags --libs libcrypto zlib) || { echo "run.sh: pkg-config libcrypto zlib failed" >&2; exit 2; }

# target: the pure sources it needs, and its corpus directory
targets="fuzz_frame fuzz_http"
srcs_fuzz_frame="src/ws_frame.c src/utf8.c src/sbuf.c src/deflate.c"
srcs_fuzz_http="src/http.c"

status=0
for t in $targets; do
	eval "srcs=\$srcs_$t"
	corpus=$here/corpus_${t#fuzz_}
	files=""
	for s in $srcs; do files="$files $top/$s"; done
	# shellcheck disable=SC2086
	if ! $cc $cflags -o "$work/$t" "$here/$t.c" $files $libs 2>"$work/$t.build"; then
		echo "$t: FAILED (build)"
		cat "$work/$t.build" >&2
		status=1
		continue
	fi
	mkdir -p "$work/corpus_$t" "$work/artifacts_$t"
	if [ -d "$corpus" ]; then
		cp "$corpus"/* "$work/corpus_$t/" 2>/dev/null || true
	fi
	start=$(date +%s)
	"$work/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix="$work/artifacts_$t/" "$work/corpus_$t" >"$work/$t.log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
	[ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$work/$t.log" | tail -1)
	if [ $rc -eq 0 ] && ! grep -q "ERROR: \|runtime error:\|invariant failed" "$work/$t.log"; then
		echo "$t: ok (${runs:-?} runs in $took s)"
	else
		echo "$t: FAILED (exit $rc after ${runs:-?} runs in $took s)"
		grep -A 30 "ERROR: \|runtime error:\|invariant failed" "$work/$t.log" | head -60 >&2
		keep=${TMPDIR:-/tmp}/roomd-fuzz-crashes
		for a in "$work/artifacts_$t"/*; do
			[ -f "$a" ] || continue
			mkdir -p "$keep"
			cp "$a" "$keep/" && echo "  reproducer kept: $keep/$(basename "$a")" >&2
		done
		status=1
	fi
done
exit $status
