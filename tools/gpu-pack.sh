#!/usr/bin/env bash
# Prepares what tools/gpu-check.sh needs on a GPU machine that has no Node.js
# and no network, in .gpu-carry/ (git-ignored; carry it with the repo):
#   node.xz          this machine's node binary (Linux x86-64), xz-compressed
#   bundle.tar.xz    package.json, dist/ (built tests and CLI), the native cpu
#                    addon, and the production node_modules (Dawn: linux-x64 only)
#   debs/            libvulkan1 (the Vulkan loader) and the OpenMP OpenBLAS
#                    + libgomp1 (for the cpu addon), unpacked there only if missing
# About 40 MB in all. Run after `npm run build`:
#   tools/gpu-pack.sh && <copy or carry .gpu-carry/ and tools/ to the GPU machine>
#   tools/gpu-check.sh            # there; results in $OUT or gpu-results/
set -euo pipefail
cd "$(dirname "$0")/.."
carry=.gpu-carry
mkdir -p "$carry/debs"
[ -f dist/test/webgpu.test.js ] || { echo "gpu-pack: dist/ is not built: run npm run build" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || { echo "gpu-pack: the GPU machine is x86-64; pack on an x86-64 machine" >&2; exit 1; }

node_bin=$(command -v node)
if [ ! -f "$carry/node.xz" ] || [ "$node_bin" -nt "$carry/node.xz" ]; then
  echo "gpu-pack: compressing $node_bin ($(node --version))"
  xz -T0 -6 -c "$node_bin" > "$carry/node.xz.tmp" && mv "$carry/node.xz.tmp" "$carry/node.xz"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/app/native/build/Release"
cp package.json "$stage/app/"
cp -r dist "$stage/app/"
cp native/build/Release/abrupt.node "$stage/app/native/build/Release/" 2>/dev/null || echo "gpu-pack: no native addon (cpu parity will use ref)"
# production dependencies only (npm ls), without Dawn's other platforms
npm ls --omit=dev --parseable --all 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' \
  | awk -F/ '{ if ($2 ~ /^@/) print $1"/"$2"/"$3; else print $1"/"$2 }' | sort -u > "$stage/mods"
tar -cf - --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
  --exclude='node_modules/webgpu/dist/linux-arm64' -T "$stage/mods" | tar -xf - -C "$stage/app"
echo "gpu-pack: bundling $(du -sh "$stage/app" | cut -f1) of app"
tar -C "$stage" -cf - app | xz -T0 -6 > "$carry/bundle.tar.xz"

# Debian packages the GPU machine may lack (unpacked there into /tmp only)
(cd "$carry/debs" && rm -f ./*.deb && apt-get download -q libvulkan1 libopenblas0-openmp libgomp1 2>&1 | grep -v '^W:' || true)
du -sh "$carry"/* | sed 's/^/gpu-pack: /'
echo "gpu-pack: carry .gpu-carry (e.g. the device tool's carry: [\".gpu-carry\"]), then run tools/gpu-check.sh there"
