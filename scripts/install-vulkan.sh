#!/usr/bin/env bash
# A software Vulkan adapter for the `webgpu` backend's tests (CI has no GPU):
# the Vulkan loader (libvulkan1, apt-get when missing) and lavapipe, Mesa's
# CPU Vulkan driver. On Debian 12 (bookworm) it comes from bookworm-backports
# (Mesa 25): Debian 12's own Mesa 22.3 is rejected by Dawn
# ("shaderUniform*ArrayDynamicIndexing required"). On later releases the
# distribution's mesa-vulkan-drivers is used as it is. The backports packages are only downloaded and unpacked into
# .cache/lavapipe/ (git-ignored): no system package is upgraded. The result is
# .cache/lavapipe/lvp_icd.json, which src/kernels/webgpu-env.ts points
# VK_DRIVER_FILES at when ABRUPT_WEBGPU_SOFTWARE=1 (the tests set it).
# Idempotent; about 5 s once the package lists are fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=.cache/lavapipe
icd=$dest/lvp_icd.json
triplet=$( (cc -print-multiarch || gcc -print-multiarch) 2>/dev/null || true)
triplet=${triplet:-$(uname -m)-linux-gnu}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 '; then
  echo "install-vulkan: installing the Vulkan loader (libvulkan1)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends libvulkan1
fi

# Debian 13 (trixie) and later ship a Mesa that Dawn accepts: use the
# distribution's lavapipe. Only Debian 12 (bookworm) needs the backports one.
codename=$( (. /etc/os-release && echo "${VERSION_CODENAME:-}") 2>/dev/null || true)
if [ -n "$codename" ] && [ "$codename" != bookworm ]; then
  sys_icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -1 || true)
  if [ -z "$sys_icd" ]; then
    echo "install-vulkan: installing lavapipe from $codename (mesa-vulkan-drivers)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers
    sys_icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -1 || true)
  fi
  if [ -z "$sys_icd" ]; then
    echo "install-vulkan: mesa-vulkan-drivers installed no lavapipe ICD in /usr/share/vulkan/icd.d" >&2
    exit 1
  fi
  mkdir -p "$dest"
  cp "$sys_icd" "$icd.tmp" && mv "$icd.tmp" "$icd"
  echo "install-vulkan: using $codename's lavapipe ($sys_icd → $icd)"
  exit 0
fi

lib=$PWD/$dest/root/usr/lib/$triplet
if [ -f "$icd" ] && [ -f "$lib/libvulkan_lvp.so" ]; then
  echo "install-vulkan: lavapipe already in $dest"
  exit 0
fi

echo "install-vulkan: fetching lavapipe (mesa-vulkan-drivers) from bookworm-backports into $dest"
rm -rf "$dest"
mkdir -p "$dest/apt/lists/partial" "$dest/apt/sources.d" "$dest/debs" "$dest/root"
# The same mirror the machine already uses (deb822 or one-line format).
uri=$(grep -hoE '^URIs: *[^ ]+debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//' || true)
if [ -z "$uri" ]; then
  uri=$(grep -hoE '^deb +[^ ]+debian/? +bookworm ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 | awk '{print $2}' || true)
fi
uri=${uri:-http://deb.debian.org/debian}
cat > "$dest/apt/sources.d/backports.sources" <<SRC
Types: deb
URIs: $uri
Suites: bookworm bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$PWD/$dest/apt/sources.d"
  -o "Dir::State::lists=$PWD/$dest/apt/lists" -o "Dir::Cache::archives=$PWD/$dest/debs" -o "Debug::NoLocking=1")
apt-get "${apt_opts[@]}" update -qq
(cd "$dest/debs" && apt-get "${apt_opts[@]}" download \
  mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports)
for f in "$dest"/debs/*.deb; do dpkg-deb -x "$f" "$dest/root"; done
# lavapipe's own dependencies (LLVM 15, xcb, wayland...) come from bookworm
# itself: install those not present (libdrm comes from backports, above).
deps=$(dpkg-deb -f "$dest"/debs/mesa-vulkan-drivers_*.deb Depends | tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/ //g' \
  | grep -vE '^(libdrm|python3|libvulkan1|libc6$|$)' || true)
need=()
for p in $deps; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "install-vulkan: installing lavapipe's dependencies: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ! -f "$lib/libvulkan_lvp.so" ]; then
  echo "install-vulkan: $lib/libvulkan_lvp.so missing after unpacking" >&2
  exit 1
fi
cat > "$icd" <<JSON
{
  "file_format_version": "1.0.1",
  "ICD": { "library_path": "$lib/libvulkan_lvp.so", "api_version": "1.4.305" }
}
JSON
rm -rf "$dest/apt" "$dest/debs"
echo "install-vulkan: lavapipe ready ($icd)"
