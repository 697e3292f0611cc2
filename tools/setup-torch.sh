#!/usr/bin/env bash
# The faster PyTorch peer for `abrupt bench --torch`: the PyTorch 2.13 CPU
# wheel (MKL + oneDNN) from $PIP_FIND_LINKS, installed offline into a venv
# with the system's site packages, plus a stub `filelock` module (which
# torch imports and which cannot be fetched here) on the venv's path.
#
#   tools/setup-torch.sh DIR        # then: abrupt bench --torch DIR/bin/python
#
# Idempotent: a DIR whose python already imports torch 2.13 is left alone.
# The stub sits in DIR/stubs/filelock and reaches sys.path through a .pth
# file in the venv's site-packages (the same as putting DIR/stubs on
# PYTHONPATH, without having to set it for every run).
set -euo pipefail
dir="${1:?usage: tools/setup-torch.sh DIR}"
links="${PIP_FIND_LINKS:-/opt/wheels}"
python="${PYTHON:-python3}"

stub() {
mkdir -p "$dir/stubs/filelock"
cat > "$dir/stubs/filelock/__init__.py" <<'PY'
"""A stand-in for the `filelock` package, which torch imports: locks that do nothing (enough for training on CPU in one process)."""


class Timeout(TimeoutError):
    pass


class BaseFileLock:
    def __init__(self, lock_file=None, timeout=-1, *args, **kwargs):
        self.lock_file = lock_file
        self.timeout = timeout

    @property
    def is_locked(self):
        return False

    def acquire(self, *args, **kwargs):
        return self

    def release(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FileLock(BaseFileLock):
    pass


class SoftFileLock(BaseFileLock):
    pass


UnixFileLock = FileLock
PY
site="$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$(cd "$dir/stubs" && pwd)" > "$site/abrupt-filelock-stub.pth"
}

ok() { [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import filelock, torch, sys; sys.exit(0 if torch.__version__.startswith("2.13") else 1)' 2>/dev/null; }

shopt -s nullglob
wheels=("$links"/torch-2.13.0+cpu-*.whl)
[ ${#wheels[@]} -gt 0 ] || { echo "setup-torch: no torch-2.13.0+cpu wheel in $links (set PIP_FIND_LINKS)" >&2; exit 1; }

[ -x "$dir/bin/python" ] || "$python" -m venv --system-site-packages "$dir"
"$dir/bin/pip" install --quiet --no-index --no-deps "${wheels[0]}"
stub


ok || { echo "setup-torch: $dir/bin/python still cannot import torch 2.13:" >&2; "$dir/bin/python" -c 'import torch' >&2 || true; exit 1; }
echo "setup-torch: $dir ready: torch $("$dir/bin/python" -c 'import torch; print(torch.__version__)') (use: abrupt bench --torch $dir/bin/python)"
