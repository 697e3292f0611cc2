// The dashboard end to end in a real browser: Debian's Chromium, headless,
// driven by playwright-core, against `abrupt serve` (a child process) on a
// small finished run made here and a "live" run whose metrics the test
// appends. Checks: the page loads, the loss chart has points, moving the
// checkpoint scrubber redraws the attention grid with another checkpoint,
// appended metrics reach the chart without a reload. Screenshots go to
// test-output/ (git-ignored). Needs /usr/bin/chromium (scripts/install-system.sh
// installs it) and the built page (npm run build): without them it fails.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type Page, chromium } from "playwright-core";
import { spawnServe } from "../src/server/child.js";
import { bin, root } from "./helpers/cli.js";

const shots = join(root, "test-output");
const chromiumPath = process.env["ABRUPT_CHROMIUM"] ?? "/usr/bin/chromium";
const top = mkdtempSync(join(tmpdir(), "abrupt-e2e-"));
const runs = join(top, "runs");
let server: ChildProcess | null = null;
let browser: Browser | null = null;
let page: Page;
let url = "";

before(async () => {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}: run scripts/install-system.sh (apt-get install chromium) or set ABRUPT_CHROMIUM`);
  assert.ok(existsSync(join(root, "dist", "web", "index.html")), "the dashboard is not built: run npm run build");
  mkdirSync(shots, { recursive: true });
  mkdirSync(runs, { recursive: true });
  const done = join(runs, "done");
  const r = spawnSync(process.execPath, [bin, "train", "--m", "4", "--n", "4", "--rank", "1", "--layers", "2", "--heads", "2", "--width", "16", "--ff", "32",
    "--positions", "16", "--batch", "16", "--lr", "0.003", "--warmup", "0", "--steps", "60", "--ckpt-every", "20", "--ckpt-log", "0", "--eval-every", "10", "--eval-batch", "16",
    "--threads", "1", "--out", done, "--quiet"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  // a run "in progress": the first 30 steps of the finished one, the rest appended by the test
  const live = join(runs, "live");
  mkdirSync(live);
  cpSync(join(done, "config.json"), join(live, "config.json"));
  mkdirSync(join(live, "checkpoints"));
  cpSync(join(done, "checkpoints", "step-0000020.safetensors"), join(live, "checkpoints", "step-0000020.safetensors"));
  writeFileSync(join(live, "status.json"), JSON.stringify({ status: "running", step: 30, pid: process.pid }));
  const lines = readFileSync(join(done, "metrics.jsonl"), "utf8").trim().split("\n");
  writeFileSync(join(live, "metrics.jsonl"), lines.slice(0, 30).join("\n") + "\n");

  const served = await spawnServe(runs);
  server = served.child;
  url = served.url;
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  (page as Page & { _errors?: string[] })._errors = errors;
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill("SIGTERM");
    await new Promise((r) => server!.once("exit", r));
  }
  rmSync(top, { recursive: true, force: true });
});

const attr = (sel: string, name: string) => page.locator(sel).getAttribute(name);

test("the page loads and lists both runs; the loss chart has points", async () => {
  await page.goto(`${url}#run=done`);
  await page.waitForSelector("body[data-ready='1']", { timeout: 30000 });
  const names = await page.locator("#runs-table .run-name").allTextContents();
  assert.deepEqual(names.sort(), ["done", "live"]);
  await page.waitForFunction(() => Number(document.querySelector("#loss-chart")?.getAttribute("data-points") ?? 0) > 0, null, { timeout: 20000 });
  // 60 steps × L, L_mask, L_obs + 6 eval points
  assert.equal(Number(await attr("#loss-chart", "data-points")), 60 * 3 + 6);
  const path = await page.locator("#loss-chart svg .mark-line path").first().getAttribute("d");
  assert.ok(path && path.split(/[ML]/).length > 50, `loss line path too short: ${path?.slice(0, 80)}`);
  assert.match(await page.locator("#story").innerText(), /copy/);
  assert.equal(await page.locator("#live").isVisible(), false, "a finished run is not live");
  assert.equal(await page.locator("#runs-table tr[data-run='live'] .problems").innerText(), "");
  await page.screenshot({ path: join(shots, "e2e-dashboard.png"), fullPage: true });
  assert.deepEqual((page as Page & { _errors?: string[] })._errors, []);
});

test("moving the checkpoint scrubber redraws the attention grid for that checkpoint", async () => {
  await page.waitForSelector("#att-grid[data-step='60'] canvas", { timeout: 60000 });
  await page.waitForTimeout(300);
  const before = await page.locator("#att-grid").screenshot();
  writeFileSync(join(shots, "e2e-attention-60.png"), before);
  await page.locator("#scrub").focus();
  await page.keyboard.press("Home");
  await page.waitForSelector("#att-grid[data-step='20'] canvas", { timeout: 60000 });
  await page.waitForTimeout(300);
  assert.match(await page.locator("#scrub-label").innerText(), /checkpoint 20 \(1 of 3\)/);
  const afterShot = await page.locator("#att-grid").screenshot();
  writeFileSync(join(shots, "e2e-attention-20.png"), afterShot);
  assert.notDeepEqual(afterShot, before, "the attention grid looks the same at checkpoints 20 and 60");
  // the other panels follow the same slider
  await page.waitForSelector("#sample[data-step='20']", { timeout: 60000 });
  await page.screenshot({ path: join(shots, "e2e-scrubbed.png"), fullPage: true });
});

test("clicking a thumbnail enlarges that head; hovering a cell of the matrix makes it the query", async () => {
  await page.waitForSelector("#att-head[data-head='0.0'] canvas", { timeout: 60000 });
  const box = (await page.locator("#att-grid canvas").boundingBox())!;
  // the 2×2 grid of this run (L2 H2): layer 1 head 1 is the lower right thumbnail
  await page.mouse.click(box.x + box.width * 0.58, box.y + box.height * 0.8);
  await page.waitForSelector("#att-head[data-head='1.1']", { timeout: 20000 });
  const q0 = await attr("#att-query", "data-query");
  const cells = page.locator("#att-query svg .mark-rect path");
  assert.ok((await cells.count()) >= 16, "the query view draws the 4×4 matrix");
  for (let i = 0; i < 16; i++) {
    await cells.nth(i).hover({ force: true });
    if ((await attr("#att-query", "data-query")) !== q0) break;
  }
  const q1 = await attr("#att-query", "data-query");
  assert.notEqual(q1, q0, "hovering the matrix did not change the query cell");
  assert.match(await page.locator("#att-query").innerText(), new RegExp(`layer 1 head 1`));
  await page.locator("#att-head").screenshot({ path: join(shots, "e2e-head-1.1.png") });
});

test("a live run adds points to the loss chart without a reload", async () => {
  await page.evaluate(() => { (window as unknown as { __sameDocument: number }).__sameDocument = 42; });
  await page.locator("#runs-table .run-name", { hasText: "live" }).click();
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-steps") === "30", null, { timeout: 20000 });
  const pointsBefore = Number(await attr("#loss-chart", "data-points"));
  const lines = readFileSync(join(runs, "done", "metrics.jsonl"), "utf8").trim().split("\n");
  for (const chunk of [lines.slice(30, 40), lines.slice(40, 60)]) {
    appendFileSync(join(runs, "live", "metrics.jsonl"), chunk.join("\n") + "\n");
    await page.waitForTimeout(400);
  }
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-steps") === "60", null, { timeout: 20000 });
  const pointsAfter = Number(await attr("#loss-chart", "data-points"));
  assert.ok(pointsAfter > pointsBefore, `${pointsBefore} → ${pointsAfter}`);
  assert.equal(pointsAfter, 60 * 3 + 6);
  assert.equal(await page.evaluate(() => (window as unknown as { __sameDocument?: number }).__sameDocument), 42, "the page was reloaded");
  assert.ok(await page.locator("#live").isVisible());
  await page.screenshot({ path: join(shots, "e2e-live.png"), fullPage: true });
  assert.deepEqual((page as Page & { _errors?: string[] })._errors, []);
});
