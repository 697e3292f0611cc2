// `abrupt serve RUNS_DIR --port 0` as a child process, for the browser test
// and tools/screenshot.ts: resolves with its URL once it prints it.
import { type ChildProcess, spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const bin = join(resolve(fileURLToPath(new URL("../../..", import.meta.url))), "bin", "abrupt.js");

export interface ServeChild {
  child: ChildProcess;
  url: string;
  /** what the server wrote to stderr so far */
  stderr: () => string;
}

export function spawnServe(runsDir: string, timeoutMs = 20_000): Promise<ServeChild> {
  const child = spawn(process.execPath, [bin, "serve", runsDir, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  return new Promise<ServeChild>((ok, fail) => {
    const t = setTimeout(() => fail(new Error(`abrupt serve printed no URL; stderr: ${err}`)), timeoutMs);
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) { clearTimeout(t); ok({ child, url: m[1]!, stderr: () => err }); }
    });
    child.on("exit", (code) => { clearTimeout(t); fail(new Error(`abrupt serve exited (${code}): ${err}`)); });
  });
}
