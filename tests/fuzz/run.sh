#!/bin/sh
# run.sh [SECONDS]: build the libFuzzer targets (ASan + UBSan) and run each
# for SECONDS (default 60) on a scratch copy of its seed corpus; the repo's
# corpus is never grown. Prints one line per target ("fuzz_x: ok (N runs in
# S s)" or "fuzz_x: FAILED ..."); exits non-zero if any target crashes,
# leaks, trips a sanitizer or fails to build.
# Env: CC_FUZZ (clang), FUZZ_WORK (a work directory to keep; default: a
# temporary one, removed at exit), FUZZ_TARGETS (a space-separated subset,
# such as "fuzz_proxy fuzz_www"; default: all).
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
# config.c's paths, as Makefile.am gives them
cflags="$cflags -DREDIS_SERVER_PATH=\"/usr/bin/redis-server\" -DSRCDIR=\"$top\" -DDATADIR=\"/usr/local/share\""

# target: the pure sources it needs and the pkg-config packages they link
# (its seed corpus is corpus_<name without fuzz_>)
all="fuzz_frame fuzz_http fuzz_proxy fuzz_auth fuzz_proto fuzz_www fuzz_config fuzz_apiproto fuzz_resp"
targets=${FUZZ_TARGETS:-$all}
srcs_fuzz_frame="src/ws_frame.c src/utf8.c src/deflate.c src/sbuf.c"
pkgs_fuzz_frame="libcrypto zlib"
srcs_fuzz_http="src/http.c"
pkgs_fuzz_http="libcrypto"
srcs_fuzz_proxy="src/proxy.c"
pkgs_fuzz_proxy=""
srcs_fuzz_auth="src/auth.c"
pkgs_fuzz_auth="json-c libcrypto"
srcs_fuzz_proto="src/proto.c src/jbuf.c"
pkgs_fuzz_proto="json-c"
srcs_fuzz_www="src/www.c src/http.c"
pkgs_fuzz_www="libcrypto"
srcs_fuzz_config="src/config.c src/log.c src/proto.c src/jbuf.c src/proxy.c src/tls.c src/redisurl.c src/http.c"
pkgs_fuzz_config="json-c libssl libcrypto"
srcs_fuzz_apiproto="src/apiproto.c src/proto.c src/jbuf.c src/http.c src/utf8.c"
pkgs_fuzz_apiproto="json-c libcrypto"
srcs_fuzz_resp="src/resp.c src/redisurl.c src/http.c src/jbuf.c"
pkgs_fuzz_resp="hiredis libcrypto"

status=0
for t in $targets; do
	case " $all " in *" $t "*) ;; *) echo "$t: FAILED (no such target)"; status=1; continue ;; esac
	eval "srcs=\$srcs_$t pkgs=\$pkgs_$t"
	corpus=$here/corpus_${t#fuzz_}
	files=""
	for s in $srcs; do files="$files $top/$s"; done
	libs=""
	# shellcheck disable=SC2086
	if [ -n "$pkgs" ] && ! libs=$(pkg-config --cflags --libs $pkgs 2>"$work/$t.build"); then
		echo "$t: FAILED (pkg-config $pkgs)"
		cat "$work/$t.build" >&2
		status=1
		continue
	fi
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
	    -artifact_prefix="$work/artifacts_$t/" "$work/corpus_$t" </dev/null >"$work/$t.log" 2>&1
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
