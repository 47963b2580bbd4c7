#!/usr/bin/env bash
# Runs pymemcache's own integration tests (tests marked `integration` in
# pymemcache/test/test_integration.py, shipped in the wheel) against a memcached-compatible
# server. Usage: pymemcache_integration.sh HOST PORT
# Needs: python3 with `pymemcache` and `pytest` (pip install pymemcache pytest).
# If an installed pymemcache lacks its tests, the sdist is downloaded from PyPI into a temp dir.
set -euo pipefail
host=${1:?usage: $0 HOST PORT}
port=${2:?usage: $0 HOST PORT}
py=${PYTHON:-python3}

if ! "$py" -c 'import pymemcache, pytest' 2>/dev/null; then
    echo "pymemcache or pytest is missing for $py: run 'pip install pymemcache pytest'" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pkg=$("$py" -c 'import os, pymemcache; print(os.path.dirname(pymemcache.__file__))')
tests="$pkg/test/test_integration.py"
if [ ! -f "$tests" ]; then
    echo "installed pymemcache has no tests; downloading its sdist" >&2
    "$py" -m pip download --quiet --no-binary :all: --no-deps pymemcache -d "$work/sdist"
    tar -xzf "$work"/sdist/pymemcache-*.tar.gz -C "$work/sdist"
    tests=$(ls "$work"/sdist/pymemcache-*/pymemcache/test/test_integration.py)
fi

# Run from the temp dir so no cache or rootdir config of the caller leaks in. pytest exits
# non-zero if anything fails or if no test was selected.
cd "$work"
exec "$py" -m pytest "$tests" -m integration --server "$host" --port "$port" \
    -q -p no:cacheprovider -W ignore -rs
