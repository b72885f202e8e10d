#!/usr/bin/env bash
# Code-style gate run by `make check`: banned functions in daemon code, and clang-format.
set -u
cd "$(dirname "$0")/.."
rc=0
src=$(ls supervisor/*.[ch] sandbox/*.[ch] tests/fuzz/*.c)
if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok)\s*\(' $src; then
    echo "style: banned functions above (use snprintf, strtoul with checks, ...)" >&2
    rc=1
fi
if command -v clang-format >/dev/null 2>&1; then
    for f in $src; do
        if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
            echo "style: $f is not clang-formatted (run: make format)" >&2
            rc=1
        fi
    done
fi
[ $rc = 0 ] && echo "style: ok"
exit $rc
