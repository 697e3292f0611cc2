// Output paths that cannot be written: a file where a folder should be, a
// read-only file system, a full disk, /proc. Each gives one line
// `abrupt: ...`, a non-zero exit and leaves no partial or temporary file.
// The read-only and full file systems are small tmpfs mounts in a private
// mount namespace (`unshare -rm`), so nothing outside the test sees them.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AbruptError } from "../src/errors.js";
import { ensureDir, removeStaleTemps, writeFileAtomic } from "../src/store/files.js";
import { bin, root, runCli } from "./helpers/cli.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-files-"));
after(() => rmSync(top, { recursive: true, force: true }));
const small = ["--layers", "1", "--heads", "2", "--width", "16", "--ff", "32", "--positions", "16", "--batch", "8", "--eval-batch", "8", "--m", "4", "--n", "4", "--rank", "1", "--quiet"];
const runDir = join(top, "run");

function oneLine(r: { status: number | null; stderr: string }, re: RegExp): void {
  assert.ok(r.status !== null && r.status !== 0, `expected failure, got ${r.status} (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^abrupt: /);
  assert.match(lines[0]!, re);
}

/**
 * Runs `abrupt ARGS` with a 64 KB tmpfs mounted at `mnt` in a private mount
 * namespace: read-only, or filled to `freeKb` free. Returns its exit, stderr
 * and the files left on the tmpfs (null when namespaces are not available).
 */
function onTmpfs(mnt: string, mode: "ro" | { freeKb: number }, ...args: string[]) {
  const out = mkdtempSync(join(top, "out-"));
  mkdirSync(mnt, { recursive: true });
  const prep = mode === "ro" ? `mount -o remount,ro "$M"` : `dd if=/dev/zero of="$M/fill" bs=1k count=${64 - mode.freeKb} 2>/dev/null`;
  const script = `mount -t tmpfs -o size=64k tmpfs "$M" || exit 99; ${prep}; "$NODE" "$BIN" "$@" >"$O/stdout" 2>"$O/stderr"; echo $? >"$O/rc"; find "$M" -mindepth 1 >"$O/files"`;
  const r = spawnSync("unshare", ["-rm", "sh", "-c", script, "sh", ...args], { cwd: root, encoding: "utf8", env: { ...process.env, M: mnt, O: out, NODE: process.execPath, BIN: bin } });
  if (r.status === 99 || r.error || !existsSync(join(out, "rc"))) return null;
  const files = readFileSync(join(out, "files"), "utf8").split("\n").filter(Boolean).map((f) => f.slice(mnt.length + 1)).sort();
  return { status: Number(readFileSync(join(out, "rc"), "utf8")), stderr: readFileSync(join(out, "stderr"), "utf8"), files };
}

before(() => {
  const r = runCli("train", ...small, "--steps", "4", "--ckpt-every", "2", "--ckpt-log", "0", "--out", runDir);
  assert.equal(r.status, 0, r.stderr);
});

test("--out on a file, under a file, or in /proc: one line, no hang", () => {
  const file = join(top, "a-file");
  writeFileSync(file, "x");
  oneLine(runCli("train", ...small, "--steps", "1", "--out", file), /a-file: it is a file, not a folder/);
  oneLine(runCli("train", ...small, "--steps", "1", "--out", join(file, "run")), /a-file is a file, not a folder/);
  assert.equal(readFileSync(file, "utf8"), "x");
  // Node's recursive mkdir loops forever on /proc/x; a timeout here would be the hang
  const r = spawnSync(process.execPath, [bin, "train", ...small, "--steps", "1", "--out", "/proc/abrupt-x/run"], { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.equal(r.signal, null, "abrupt train --out /proc/... hung");
  oneLine(r, /cannot create run folder \/proc\/abrupt-x\/run/);
  oneLine(runCli("analyze", "copy", runDir, "--step", "4", "--opt", "batch=8", "--out", join(file, "an")), /a-file is a file, not a folder/);
  oneLine(runCli("report", runDir, "--out", join(file, "r.html")), /cannot write report .*does not exist/);
  oneLine(runCli("bench", "--sizes", "S", "--json", join(top, "no-such-dir", "b.json")), /cannot write --json file .*does not exist/);
});

test("read-only file system: train, analyze, report and bench fail with one line", (t) => {
  const mnt = join(top, "ro");
  const r = onTmpfs(mnt, "ro", "train", ...small, "--steps", "1", "--out", join(mnt, "run"));
  if (r === null) { t.skip("needs a private mount namespace (unshare -rm)"); return; }
  oneLine(r, /cannot create run folder .*read-only file system/);
  assert.deepEqual(r.files, []);
  const r2 = onTmpfs(mnt, "ro", "train", ...small, "--steps", "1", "--out", mnt)!;
  oneLine(r2, /cannot write to run folder .*read-only file system/);
  oneLine(onTmpfs(mnt, "ro", "analyze", "copy", runDir, "--step", "4", "--opt", "batch=8", "--out", join(mnt, "an"))!, /read-only file system/);
  oneLine(onTmpfs(mnt, "ro", "report", runDir, "--out", join(mnt, "r.html"))!, /cannot write report .*read-only file system/);
  oneLine(onTmpfs(mnt, "ro", "bench", "--sizes", "S", "--json", join(mnt, "b.json"))!, /cannot write --json file .*read-only file system/);
});

test("full disk at start: one line, no config.json.tmp-* or empty lock left", (t) => {
  const mnt = join(top, "full");
  // room for the lock file, not for config.json
  const r = onTmpfs(mnt, { freeKb: 4 }, "train", ...small, "--steps", "1", "--out", join(mnt, "run"));
  if (r === null) { t.skip("needs a private mount namespace (unshare -rm)"); return; }
  oneLine(r, /no space left on the device/);
  assert.deepEqual(r.files.filter((f) => !/^(fill|run|run\/checkpoints)$/.test(f)), [], `left: ${r.files.join(", ")}`);
  // no room at all: the lock file cannot be written either
  const r2 = onTmpfs(mnt, { freeKb: 0 }, "train", ...small, "--steps", "1", "--out", join(mnt, "run"))!;
  oneLine(r2, /no space left on the device/);
  assert.deepEqual(r2.files.filter((f) => !/^(fill|run)$/.test(f)), [], `left: ${r2.files.join(", ")}`);
  // an analysis whose results do not fit
  const r3 = onTmpfs(mnt, { freeKb: 0 }, "analyze", "copy", runDir, "--step", "4", "--opt", "batch=8", "--out", join(mnt, "an"))!;
  oneLine(r3, /cannot write .*copy\.json: no space left on the device/);
  assert.deepEqual(r3.files.filter((f) => /tmp-/.test(f)), []);
});

test("writeFileAtomic: a failed write leaves the old file and no temporary file", () => {
  const d = mkdtempSync(join(top, "atomic-"));
  const f = join(d, "x.json");
  writeFileAtomic(f, "old");
  const target = join(d, "adir");
  mkdirSync(target);
  writeFileSync(join(target, "inside"), "y");
  assert.throws(() => writeFileAtomic(target, "new"), (e: unknown) => e instanceof AbruptError && /cannot write .*adir/.test(e.message));
  assert.deepEqual(readdirSync(d).sort(), ["adir", "x.json"]);
  assert.equal(readFileSync(f, "utf8"), "old");
  assert.throws(() => ensureDir(join(f, "sub")), /x\.json is a file, not a folder/);
});

test("leftover *.tmp-PID files of dead processes are removed when a run starts in the folder", () => {
  const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
  const stale = ["config.json.tmp-" + dead, join("checkpoints", "step-0000004.safetensors.tmp-" + dead), "loss.svg.tmp-" + dead];
  const live = "status.json.tmp-" + process.pid; // a writer that is still running
  for (const f of [...stale, live]) writeFileSync(join(runDir, f), "");
  assert.equal(removeStaleTemps(join(top, "nowhere")).length, 0);
  const r = runCli("train", "--resume", "--out", runDir, "--steps", "5", "--quiet");
  assert.equal(r.status, 0, r.stderr);
  for (const f of stale) assert.equal(existsSync(join(runDir, f)), false, `${f} left`);
  assert.ok(existsSync(join(runDir, live)), "a live process's temporary file was removed");
  rmSync(join(runDir, live));
});
