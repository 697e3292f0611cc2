// Takes a full-page screenshot of the dashboard on one run, at the post-drop
// checkpoint (or the last one), for the README:
//   node dist/tools/screenshot.js RUNS_DIR RUN OUT.png
// Starts `abrupt serve RUNS_DIR` on a free port, drives Debian's Chromium
// (ABRUPT_CHROMIUM overrides /usr/bin/chromium) with playwright-core, waits
// until every panel has drawn, then writes OUT.png.
import { chromium } from "playwright-core";
import { spawnServe } from "../test/helpers/serve.js";

const [runsDir, run, out] = process.argv.slice(2);
if (!runsDir || !run || !out) {
  console.error("usage: node dist/tools/screenshot.js RUNS_DIR RUN OUT.png");
  process.exit(2);
}
const { child: server, url } = await spawnServe(runsDir);
try {
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
