#!/bin/sh
# Starts ms-host with a console, runs `ms-host attach` on it in the
# foreground (on pty_drive's terminal), then stops the host and checks it
# was still serving and ends cleanly.  Usage: attach_pty.sh MS_HOST
set -u
host=$1
dir=$(mktemp -d)
sock=$dir/console.sock
# The main job: runs until told to stop (or for 60 s, so that a killed
# test leaves no host behind for long).
cat >"$dir/main.lua" <<LUA
local t0 = ms.now()
while not io.open("$dir/stop") and ms.now() - t0 < 60 do ms.sleep(0.02) end
print("main ok")
LUA
"$host" run "$dir/main.lua" --workers 2 --console "$sock" </dev/null >"$dir/out" 2>"$dir/err" &
pid=$!
i=0
while [ ! -S "$sock" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
"$host" attach "$sock"
rc=$?
: >"$dir/stop"
wait $pid
hrc=$?
if [ $hrc -ne 0 ] || ! grep -q "main ok" "$dir/out"; then
    echo "attach_pty.sh: the host ended with status $hrc:" >&2
    cat "$dir/out" "$dir/err" >&2
    rc=1
fi
rm -rf "$dir"
exit $rc
