#!/bin/bash
# Build mbgate with proposed patches applied, without touching src/:
#   tests/bench/patched.sh NAME [PATCH...]   (default: every tests/bench/patches/*.patch)
# copies Makefile + src/ into build/bench/patched/NAME/, applies the patches
# there (patch -p1) and builds build/bench/patched/NAME/build/mbgate (+ objects),
# so that bench runs can compare it with build/mbgate:
#   MBGATE_BIN=build/bench/patched/NAME/build/mbgate tests/bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: patched.sh NAME [PATCH...]}
shift
patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=(tests/bench/patches/*.patch)
dir=build/bench/patched/$name
rm -rf "$dir"
mkdir -p "$dir"
cp -r Makefile src conf "$dir/"
mkdir -p "$dir/tests" && cp -r tests/unit "$dir/tests/"  # so that `make -C DIR B=build unit` works
for p in "${patches[@]}"; do
  echo "applying $p"
  patch -s -p1 -d "$dir" < "$p"
done
make -s -C "$dir" B=build build/mbgate >/dev/null
echo "$dir/build/mbgate"
