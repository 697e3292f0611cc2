#!/usr/bin/env bash
# Sets everything up on a fresh Debian machine with Node 20 (compiler and
# OpenBLAS from apt, the Vulkan loader and lavapipe for the webgpu tests,
# npm packages, native + TypeScript build), then runs the
# default experiment: `abrupt train` with the cpu preset, which shows the
# plateau and the drop in minutes on 2 cores. Extra arguments go to
# `abrupt train` (e.g. ./setup.sh --out runs/mine --seed 3).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-system.sh
bash scripts/install-vulkan.sh   # software GPU (lavapipe) for the webgpu backend's tests
# vite is pinned to ~8.3: 8.4 names an optional package that the registry
# here lacks, and npm ci then refuses.
npm ci --no-audit --no-fund
npm run build
if [ "${ABRUPT_SETUP_ONLY:-0}" = "1" ]; then exit 0; fi
node bin/abrupt.js train "$@"
