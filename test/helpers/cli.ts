// The command line as the tests run it: `node bin/abrupt.js ...` from the
// repository root, output captured.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "../../src/kernels/cpu.js";

export const root = repoRoot();
export const bin = join(root, "bin", "abrupt.js");
export const runCli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", cwd: root });

/** Asserts that a CLI call failed with exactly one line `abrupt: …` matching `re`. */
export function oneLine(r: ReturnType<typeof runCli>, re: RegExp): void {
  assert.notEqual(r.status, 0, `expected failure (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^abrupt: /);
  assert.match(lines[0]!, re);
}
