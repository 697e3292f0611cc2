#!/usr/bin/env bash
# Installs what the tests need (as ./setup.sh does, without the experiment),
# builds, and runs the whole test suite with Node's test runner.
set -euo pipefail
cd "$(dirname "$0")"
ABRUPT_SETUP_ONLY=1 ./setup.sh
npm test
