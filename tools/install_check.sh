#!/bin/sh
# tools/install_check.sh BUILD_DIR LUA_CMODDIR
#
# ctest install.tree (cmake/install.cmake): installs BUILD_DIR into a
# temporary prefix and uses the installed tree from another directory, as
# a user would:
#   1. ms-host run share/ms-host/scripts/agents.lua, and `ms-host profiles`
#      (the Lua modules and profiles found beside the executable);
#   2. a small C program compiled with `pkg-config --cflags --libs libms`,
#      run against the installed libms.so (whose SONAME is versioned);
#   3. a CMake project using find_package(ms) and ms::ms;
#   4. luajit -e 'require "ms"' against the installed module.
# Then the prefix is moved and step 1 runs again (the tree is relocatable).
set -eu
build=$(cd "$1" && pwd)
cmoddir=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/ms-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
away=$work/elsewhere
mkdir -p "$away"

say() { printf '== %s\n' "$*"; }
fail() { printf 'install_check: %s\n' "$*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(cd "$prefix" && ls -d lib* | head -1)
[ -f "$prefix/$libdir/libms.a" ] || libdir=$(dirname "$(cd "$prefix" && find . -name libms.a | head -1)")

say "the SONAME of libms.so is versioned"
soname=$(objdump -p "$prefix/$libdir/libms.so" | awk '/SONAME/ {print $2}')
case $soname in libms.so.[0-9]*) ;; *) fail "libms.so's SONAME is '$soname'" ;; esac
[ -e "$prefix/$libdir/$soname" ] || fail "no $soname beside libms.so"

say "ms-host runs the installed example from another directory"
cd "$away"
out=$(env -u MS_LUA_DIR "$prefix/bin/ms-host" run "$prefix/share/ms-host/scripts/agents.lua" 2>&1) ||
    fail "ms-host run agents.lua failed: $out"
printf '%s\n' "$out" | tail -3
env -u MS_LUA_DIR "$prefix/bin/ms-host" profiles >profiles.txt 2>&1 || fail "ms-host profiles: $(cat profiles.txt)"
grep -q "$prefix/share/ms-host/profiles/default.lua" profiles.txt ||
    fail "ms-host profiles does not read the installed profiles: $(head -3 profiles.txt)"

say "a C program built with pkg-config --cflags --libs libms"
cat >hello.c <<'C'
#include <ms.h>
#include <stdio.h>

static void *job(void *arg) { return arg; }

int main(void) {
    ms_config cfg;
    ms_config_default(&cfg);
    cfg.worker_threads = 1;
    ms_runtime *rt;
    ms_error err;
    if (ms_runtime_new(&cfg, &rt, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    ms_task *t;
    void *out = NULL;
    if (ms_spawn_blocking(rt, job, (void *)"ok", &t) != 0 || ms_task_join(t, -1, &out, &err) != 0)
        return 1;
    printf("libms %s says %s\n", MS_VERSION_STRING, (const char *)out);
    ms_task_release(t);
    ms_runtime_shutdown(rt, MS_SHUTDOWN_CANCEL, 1000, NULL);
    ms_runtime_free(rt);
    return 0;
}
C
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
# shellcheck disable=SC2046
cc -o hello hello.c $(pkg-config --cflags --libs libms) || fail "cannot build against libms"
LD_LIBRARY_PATH="$prefix/$libdir" ./hello | grep -q "says ok" || fail "the C program did not run"
LD_LIBRARY_PATH="$prefix/$libdir" ldd ./hello | grep -q "$prefix/$libdir/$soname" ||
    fail "the C program is not linked to the installed $soname"

say "a CMake project with find_package(ms)"
mkdir -p cmk
cp hello.c cmk/
cat >cmk/CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.18)
project(hello_ms C)
find_package(ms 0.1 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE ms::ms)
CM
cmake -S cmk -B cmk/build -DCMAKE_PREFIX_PATH="$prefix" >cmk.log 2>&1 || fail "find_package(ms): $(tail -20 cmk.log)"
cmake --build cmk/build >>cmk.log 2>&1 || fail "building with ms::ms: $(tail -20 cmk.log)"
LD_LIBRARY_PATH="$prefix/$libdir" cmk/build/hello | grep -q "says ok" || fail "the CMake-built program did not run"

say "plain LuaJIT: require \"ms\""
LUA_CPATH="$prefix/$cmoddir/?.so;;" luajit -e '
    local ms = require "ms"
    assert(type(ms.run) == "function" and ms.version, "not the ms module")
    assert(ms.run(function() ms.sleep(0.01) end))
    print("ms " .. ms.version .. " from " .. package.searchpath("ms", package.cpath))' ||
    fail "luajit cannot use the installed ms module"

say "the tree moved elsewhere still finds its modules"
mv "$prefix" "$work/moved"
env -u MS_LUA_DIR "$work/moved/bin/ms-host" run "$work/moved/share/ms-host/scripts/agents.lua" \
    >moved.txt 2>&1 || fail "the moved ms-host failed: $(tail -5 moved.txt)"
echo "install_check: all passed"
