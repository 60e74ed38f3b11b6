#!/bin/sh
# check_exports.sh BINARY ALLOWED [HEADER]
#
# Fails when BINARY (a shared library, a module or an executable) exports a
# defined dynamic symbol whose name does not match the extended regular
# expression ALLOWED, or exports nothing at all.  With HEADER, every
# function HEADER declares with MS_API must be exported too.  Version
# suffixes (stdout@GLIBC_2.2.5) are ignored.
set -eu
bin=$1 allowed=$2 header=${3:-}

names=$(nm -D --defined-only "$bin" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
if [ -z "$names" ]; then
    echo "$bin exports nothing" >&2
    exit 1
fi
status=0
bad=$(printf '%s\n' "$names" | grep -Ev "$allowed" || true)
if [ -n "$bad" ]; then
    echo "$bin exports symbols outside its API ($allowed):" >&2
    printf '  %s\n' $bad >&2
    status=1
fi
if [ -n "$header" ]; then
    declared=$(grep -oE '^MS_API [^(]*[ *]ms_[a-z0-9_]+\(' "$header" |
               grep -oE 'ms_[a-z0-9_]+\($' | tr -d '(' | sort -u)
    missing=$(printf '%s\n' "$declared" | grep -vxF "$names" || true)
    if [ -n "$missing" ]; then
        echo "$bin does not export these functions of $header:" >&2
        printf '  %s\n' $missing >&2
        status=1
    fi
fi
[ $status -eq 0 ] && echo "$bin: $(printf '%s\n' "$names" | wc -l) exported symbols, all allowed"
exit $status
