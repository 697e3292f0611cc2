#!/usr/bin/env bash
# System packages for the native `cpu` backend (native/abrupt.c): a C
# toolchain, python3 (node-gyp), and OpenBLAS with its CBLAS header.
# Idempotent: installs nothing when everything is present. Debian/Ubuntu.
# Also Chromium (Debian's package) for the dashboard's browser test.
#
# OpenBLAS variant: Debian ships a pthread build (libopenblas0-pthread, what
# `libopenblas-dev` pulls in) and an OpenMP build (libopenblas0-openmp). Our
# kernels use OpenMP (libgomp); the pthread build keeps a second thread pool
# that spins next to ours. Measured on the 2-core dev machine, one BERT layer
# forward+backward (B=128 T=49 C=128 F=512, 2 threads): OpenMP build 74-76 ms
# (mean 81), pthread build 104-125 ms (mean 148); at 1 thread both ~128 ms.
# So we install the OpenMP build and link it by path with an rpath
# (native/blas-libs.sh); the system-wide libopenblas.so.0 alternative is left
# alone. Vector erfcf/expf for GELU come from glibc's libmvec (libc6-dev,
# glibc >= 2.35).
set -euo pipefail

triplet=$( (cc -print-multiarch || gcc -print-multiarch) 2>/dev/null || true)
triplet=${triplet:-$(uname -m)-linux-gnu}

missing=()
command -v cc >/dev/null 2>&1 || missing+=("cc")
command -v make >/dev/null 2>&1 || missing+=("make")
command -v python3 >/dev/null 2>&1 || missing+=("python3")
[ -e "/usr/include/$triplet/cblas.h" ] || [ -e /usr/include/cblas.h ] || missing+=("cblas.h")
[ -e "/usr/lib/$triplet/openblas-openmp/libopenblas.so.0" ] || missing+=("OpenMP OpenBLAS")
[ -e "/usr/lib/$triplet/libmvec.so" ] || missing+=("libmvec")

# Debian's Chromium drives the dashboard's end-to-end test (playwright-core
# launches /usr/bin/chromium headless; test/web-e2e.test.ts).
[ -x /usr/bin/chromium ] || missing+=("chromium")
# Redis for the distributed sweep queue (abrupt sweep --queue, abrupt worker);
# the queue test starts its own redis-server on loopback.
command -v redis-server >/dev/null 2>&1 || missing+=("redis-server")

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system: toolchain, OpenBLAS (OpenMP build), Chromium and redis-server already present"
  exit 0
fi

echo "install-system: missing ${missing[*]}; installing packages"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
pkgs=(build-essential python3 libopenblas-openmp-dev)
[ -x /usr/bin/chromium ] || pkgs+=(chromium)
command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
$SUDO apt-get install -y --no-install-recommends "${pkgs[@]}"

if [ ! -e "/usr/lib/$triplet/libmvec.so" ]; then
  echo "install-system: libmvec not found (needs glibc >= 2.35, e.g. Debian 12 / Ubuntu 22.04)" >&2
  exit 1
fi
echo "install-system: done; now run: npm run build:native"
