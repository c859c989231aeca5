#!/usr/bin/env bash
# Builds and runs the C tests (tests/c/test_<family>_*.c): every fast kernel of a family against
# its reference path, in C, without Python.  From any folder of the clone:
#   bash tests/c/run.sh                                  # the system's cc, this CPU's clone
#   CC=clang bash tests/c/run.sh -DFASTCORE_PORTABLE     # extra compiler flags: the plain-C backend
#   CC=aarch64-linux-gnu-gcc LDFLAGS=-static RUN=qemu-aarch64 bash tests/c/run.sh   # arm64 under qemu
# N=... sets the number of random problems per dtype (default: the test's own).
set -euo pipefail
cd "$(dirname "$0")/../.."
CC=${CC:-cc}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for test in tests/c/test_*.c; do
    name=$(basename "$test" .c)
    family=${name#test_}
    family=${family%%_*}
    echo "--- $name ($CC $*)"
    # shellcheck disable=SC2086  # CC, LDFLAGS and RUN may hold several words
    $CC -O2 -std=c11 -fno-math-errno -fopenmp-simd -pthread -Wall -Werror -Wno-unused-function \
        -Wno-unknown-pragmas "$@" -Icsrc "$test" csrc/"$family"/*.c csrc/core/*.c ${LDFLAGS:-} \
        -o "$OUT/$name" -lm
    ${RUN:-} "$OUT/$name" ${N:-}
done
