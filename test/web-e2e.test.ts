// The dashboard end to end in a real browser: Debian's Chromium, headless,
// driven by playwright-core, against `abrupt serve` (a child process) on a
// small finished run made here and a "live" run whose metrics the test
// appends. Checks: the page loads, the loss chart has points, moving the
// checkpoint scrubber redraws the attention grid with another checkpoint,
// appended metrics reach the chart without a reload; on a sweep folder (a
// real tiny `abrupt sweep`), the Sweep panel's cells, a click on a cell
// listing its runs, and a run's drop reaching the panel without a reload. Screenshots go to
// test-output/ (git-ignored). Needs /usr/bin/chromium (scripts/install-system.sh
// installs it) and the built page (npm run build): without them it fails.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, type Page, chromium } from "playwright-core";
import { spawnServe } from "./helpers/serve.js";
import { bin, root } from "./helpers/cli.js";
import { dropLines, makeTinySweep } from "./helpers/sweep.js";
import { wilson } from "../src/sweep/stats.js";

const shots = join(root, "test-output");
const chromiumPath = process.env["ABRUPT_CHROMIUM"] ?? "/usr/bin/chromium";
const top = mkdtempSync(join(tmpdir(), "abrupt-e2e-"));
const runs = join(top, "runs");
let server: ChildProcess | null = null;
let sweepServer: ChildProcess | null = null;
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
    "--positions", "16", "--batch", "16", "--lr", "0.003", "--warmup", "0", "--steps", "60", "--ckpt-every", "20", "--ckpt-log", "0", "--eval-every", "10", "--eval-batch", "16", "--progress-every", "10",
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
  for (const s of [server, sweepServer]) {
    if (s && s.exitCode === null) {
      s.kill("SIGTERM");
      await new Promise((r) => s.once("exit", r));
    }
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
  for (const chunk of [lines.slice(30, 40), lines.slice(40, 50)]) {
    appendFileSync(join(runs, "live", "metrics.jsonl"), chunk.join("\n") + "\n");
    await page.waitForTimeout(400);
  }
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-steps") === "50", null, { timeout: 20000 });
  const pointsAfter = Number(await attr("#loss-chart", "data-points"));
  assert.ok(pointsAfter > pointsBefore, `${pointsBefore} → ${pointsAfter}`);
  assert.equal(pointsAfter, 50 * 3 + 5);
  // the progress measures overlaid: a strip under the losses, one point per
  // logged step (every 10), and it follows the run live
  await page.locator("#series-boxes label", { hasText: "attention progress" }).locator("input").check();
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-points") === String(50 * 3 + 5 + 5), null, { timeout: 20000 });
  assert.match(await page.locator("#loss-chart svg").first().innerHTML(), /progress measure/);
  appendFileSync(join(runs, "live", "metrics.jsonl"), lines.slice(50, 60).join("\n") + "\n");
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-steps") === "60", null, { timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-points") === String(60 * 3 + 6 + 6), null, { timeout: 20000 });
  await page.locator("#series-boxes label", { hasText: "attention progress" }).locator("input").uncheck();
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-points") === String(60 * 3 + 6), null, { timeout: 20000 });
  assert.equal(await page.evaluate(() => (window as unknown as { __sameDocument?: number }).__sameDocument), 42, "the page was reloaded");
  assert.ok(await page.locator("#live").isVisible());
  await page.screenshot({ path: join(shots, "e2e-live.png"), fullPage: true });
  assert.deepEqual((page as Page & { _errors?: string[] })._errors, []);
});

test("a sweep folder: the Sweep panel lists its cells as sweep.json has them; a click on a cell lists and compares its runs; a drop reaches the panel live", async () => {
  const dir = makeTinySweep(top);
  const sw = JSON.parse(readFileSync(join(dir, "sweep.json"), "utf8")) as { cells: Array<{ key: string; n_ended: number; n_drop: number; p_drop: number; p_drop_ci: [number, number]; runs: Array<{ dir: string }> }> };
  const served = await spawnServe(dir);
  sweepServer = served.child;
  await page.goto(served.url);
  await page.waitForSelector("body[data-ready='1']", { timeout: 30000 });
  await page.waitForSelector("#sweep-section:not([hidden]) #sweep-table tr[data-cell]", { timeout: 20000 });
  const pText = (p: number, ci: [number, number]) => `${p.toFixed(2)} [${ci[0].toFixed(2)}, ${ci[1].toFixed(2)}]`;
  const rows = page.locator("#sweep-table tr[data-cell]");
  assert.equal(await rows.count(), 4);
  assert.deepEqual(await page.locator("#sweep-table tr[data-cell] .cell-name").allTextContents(), sw.cells.map((c) => c.key));
  for (let i = 0; i < 4; i++) {
    const c = sw.cells[i]!;
    assert.equal(await rows.nth(i).locator(".p-drop").innerText(), pText(c.p_drop, c.p_drop_ci));
    assert.equal(await rows.nth(i).locator(".ended").innerText(), `${c.n_ended} / 2`);
  }
  assert.equal((await page.locator("#runs-table .run-name").allTextContents()).length, 8);
  await page.waitForSelector("#sweep-km[data-cells='4'] svg", { timeout: 20000 });
  await page.waitForSelector("#sweep-phase[data-cells='4'] svg", { timeout: 20000 });
  assert.match(await page.locator("#sweep-phase").innerText(), /train\.lr/);
  await page.locator("#sweep-section").screenshot({ path: join(shots, "e2e-sweep.png") });

  // a click on a cell's row: only its runs, compared, the first studied
  const cell = sw.cells[1]!;
  const names = cell.runs.map((r) => r.dir.split("/").pop()!);
  await rows.nth(1).locator(".cell-name").click();
  await page.waitForFunction((n) => document.querySelectorAll("#runs-table .run-name").length === n, names.length, { timeout: 20000 });
  assert.deepEqual(await page.locator("#runs-table .run-name").allTextContents(), names);
  assert.deepEqual(await page.locator("#runs-table .cmp").evaluateAll((els) => els.map((e) => (e as HTMLInputElement).checked)), [true, true]);
  assert.equal(await page.locator("#runs-table tr.focus").getAttribute("data-run"), names[0]);
  assert.match(await page.locator("#cell-filter").innerText(), new RegExp(`the 2 runs of cell ${cell.key.replace(/\./g, "\\.")}`));
  assert.match(await page.evaluate(() => decodeURIComponent(location.hash)), new RegExp(`cell=${cell.key.replace(/\./g, "\\.")}`));
  await page.waitForFunction(() => document.querySelector("#loss-chart")?.getAttribute("data-steps") === "200", null, { timeout: 20000 });
  // a square of the phase diagram selects its cell too (cell 2: the grid's third)
  const squares = page.locator("#sweep-phase svg g.mark-rect").nth(1).locator("path");
  assert.equal(await squares.count(), 4);
  const box = (await squares.nth(2).boundingBox())!;
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  const names2 = sw.cells[2]!.runs.map((r) => r.dir.split("/").pop()!);
  await page.waitForFunction((n) => [...document.querySelectorAll("#runs-table .run-name")].map((e) => e.textContent).join() === n, names2.join(), { timeout: 20000 });
  assert.equal(await page.locator("#sweep-table tr.selected").getAttribute("data-cell"), sw.cells[2]!.key);
  await page.selectOption("#km-x", "seconds");
  await page.waitForSelector("#sweep-km[data-x='seconds'] svg", { timeout: 20000 });
  await page.locator("#btn-all-runs").click();
  await page.waitForFunction(() => document.querySelectorAll("#runs-table .run-name").length === 8, null, { timeout: 20000 });

  // one run drops (its metrics appended): the cell's P(drop) changes without a reload
  const c3 = sw.cells[3]!;
  appendFileSync(join(dir, c3.runs[1]!.dir, "metrics.jsonl"), dropLines(200, 200));
  const want = pText((c3.n_drop + 1) / 2, wilson(c3.n_drop + 1, 2));
  await page.waitForFunction(([k, w]) => document.querySelector(`#sweep-table tr[data-cell="${k}"] .p-drop`)?.textContent === w, [c3.key, want], { timeout: 20000 });
  await page.screenshot({ path: join(shots, "e2e-sweep-page.png"), fullPage: true });
  assert.deepEqual((page as Page & { _errors?: string[] })._errors, []);
});
