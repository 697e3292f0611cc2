// The command line as the tests run it: `node bin/abrupt.js ...` from the
// repository root, output captured.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { repoRoot } from "../../src/kernels/cpu.js";

export const root = repoRoot();
export const bin = join(root, "bin", "abrupt.js");
export const runCli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", cwd: root });
