#!/usr/bin/env bash
# Run Bazel for this repo, installing it from npm first if it is missing.
#   tools/bazel.sh test //...
# The only Bazel reachable offline here is the npm package @bazel/bazel-linux_x64@2.1.0; the
# repositories it would otherwise download are stubbed in third_party/bazel (see .bazelrc).
# py_test runs with the first python3 on PATH, so the directory of the python3 that runs this
# script (the one with the project's dependencies) is put first on PATH.
set -euo pipefail

BAZEL_VERSION=2.1.0
BAZEL_PREFIX="${BAZEL_PREFIX:-/opt/bazel}"
BAZEL_BIN="${BAZEL_PREFIX}/node_modules/@bazel/bazel-linux_x64/bazel-${BAZEL_VERSION}-linux-x86_64"

if [ ! -x "${BAZEL_BIN}" ]; then
  mkdir -p "${BAZEL_PREFIX}"
  npm install --prefix "${BAZEL_PREFIX}" --no-audit --no-fund --no-save --silent \
    "@bazel/bazel-linux_x64@${BAZEL_VERSION}" >&2
  if [ ! -x "${BAZEL_BIN}" ]; then
    echo "tools/bazel.sh: npm did not install ${BAZEL_BIN}" >&2
    exit 1
  fi
fi

PYTHON_BIN_DIR="$(dirname "$(python3 -c 'import sys; print(sys.executable)')")"
export PATH="${PYTHON_BIN_DIR}:${PATH}"

exec "${BAZEL_BIN}" "$@"
