#!/bin/sh
# fuzz/run.sh BIN_DIR TARGET SECONDS [CORPUS_DIR [ARTIFACT_DIR]]
#
# One libFuzzer target (fuzz/CMakeLists.txt builds them into BIN_DIR):
# first every input of fuzz/regress/TARGET once (inputs that once crashed
# it), then SECONDS of fuzzing from the seed corpus fuzz/corpus/TARGET.
# New inputs go to CORPUS_DIR (default: a temporary directory, removed
# after), a crashing input to ARTIFACT_DIR (default: BIN_DIR/artifacts).
# Exits non-zero if any input crashed, hung or leaked.  ctest runs this
# with a few seconds (label fuzz), `./dev fuzz` with more.
set -eu
bin=$1/fuzz_$2
target=$2
secs=$3
here=$(cd "$(dirname "$0")" && pwd)
corpus=${4:-}
artifacts=${5:-$1/artifacts}
[ -n "$artifacts" ] || artifacts=$1/artifacts
[ -x "$bin" ] || { echo "fuzz/run.sh: no $bin (build the fuzzers first)" >&2; exit 2; }
mkdir -p "$artifacts"
opts="-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$artifacts/$target-"
[ -f "$here/$target.dict" ] && opts="$opts -dict=$here/$target.dict"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}:halt_on_error=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}:halt_on_error=1"
# A target whose kept Lua state LeakSanitizer misreads has suppressions.
[ -f "$here/$target.lsan" ] && export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$here/$target.lsan"

if [ -d "$here/regress/$target" ] && [ -n "$(ls -A "$here/regress/$target")" ]; then
    echo "== $target: the regression inputs"
    # shellcheck disable=SC2086
    "$bin" $opts -runs=0 "$here/regress/$target"
fi

tmp=
if [ -z "$corpus" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/ms-fuzz-$target.XXXXXX")
    corpus=$tmp
fi
mkdir -p "$corpus"
echo "== $target: fuzzing for $secs s"
status=0
# shellcheck disable=SC2086
"$bin" $opts -max_total_time="$secs" "$corpus" "$here/corpus/$target" || status=$?
[ -n "$tmp" ] && rm -rf "$tmp"
if [ "$status" -ne 0 ]; then
    echo "fuzz/run.sh: $target failed; the input is in $artifacts (add it to fuzz/regress/$target" \
         "once fixed)" >&2
fi
exit "$status"
