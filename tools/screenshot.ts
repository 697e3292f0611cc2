// Takes a full-page screenshot of the dashboard on one run, at the post-drop
// checkpoint (or the last one), for the README:
//   node dist/tools/screenshot.js RUNS_DIR RUN OUT.png
// Starts `abrupt serve RUNS_DIR` on a free port, drives Debian's Chromium
// (ABRUPT_CHROMIUM overrides /usr/bin/chromium) with playwright-core, waits
// until every panel has drawn, then writes OUT.png.
import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [runsDir, run, out] = process.argv.slice(2);
if (!runsDir || !run || !out) {
  console.error("usage: node dist/tools/screenshot.js RUNS_DIR RUN OUT.png");
  process.exit(2);
}
const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const server = spawn(process.execPath, [join(root, "bin", "abrupt.js"), "serve", runsDir, "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
try {
  const url = await new Promise<string>((ok, fail) => {
    let text = "";
    server.stdout!.on("data", (c: Buffer) => {
      text += c.toString();
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(text);
      if (m) ok(m[1]!);
    });
    server.on("exit", (code) => fail(new Error(`abrupt serve exited (${code})`)));
  });
  const browser = await chromium.launch({ executablePath: process.env["ABRUPT_CHROMIUM"] ?? "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  const page = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
  await page.goto(`${url}#run=${encodeURIComponent(run)}`);
  await page.waitForSelector("body[data-ready='1']", { timeout: 60_000 });
  // every panel fetches its analysis from the server (computed on first use)
  await page.waitForSelector("#att-grid canvas", { timeout: 600_000 });
  await page.waitForSelector("#sample[data-step]", { timeout: 600_000 });
  await page.waitForFunction(() => !document.body.innerText.includes("computing"), null, { timeout: 900_000 });
  await page.waitForTimeout(1000);
  await page.screenshot({ path: out, fullPage: true });
  await browser.close();
  console.log(`wrote ${out}`);
} finally {
  server.kill("SIGTERM");
}
