// `abrupt serve`'s server, in process: only files inside the runs folder are
// served (traversal → 400/404), malformed run folders are listed with their
// problems, the metrics API, server-sent events with only the appended lines,
// analyses computed once and cached in the run folder.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunningServer, startServer } from "../src/server/server.js";
import { bin, root } from "./helpers/cli.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-server-"));
const runs = join(top, "runs");
let srv: RunningServer;

/** GET with the path sent exactly as given (no URL normalisation). */
function get(path: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const u = new URL(srv.url);
  return new Promise((ok, fail) => {
    const req = request({ host: u.hostname, port: u.port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => ok({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on("error", fail);
    req.end();
  });
}

const line = (step: number, loss = 0.05) => JSON.stringify({ step, loss, loss_mask: loss * 4, loss_obs: loss / 10, mask_abs: 0.01, lr: 0.001, ms: 1 }) + "\n";

before(async () => {
  mkdirSync(runs, { recursive: true });
  const good = join(runs, "good");
  const r = spawnSync(process.execPath, [bin, "train", "--m", "4", "--n", "4", "--rank", "1", "--layers", "1", "--heads", "2", "--width", "16", "--ff", "32",
    "--positions", "16", "--batch", "8", "--steps", "20", "--ckpt-every", "10", "--ckpt-log", "0", "--eval-every", "5", "--eval-batch", "8", "--progress-every", "4", "--threads", "1", "--out", good, "--quiet"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  // a truncated last metrics line (a run killed mid-write)
  const trunc = join(runs, "truncated");
  mkdirSync(trunc);
  cpSync(join(good, "config.json"), join(trunc, "config.json"));
  writeFileSync(join(trunc, "status.json"), JSON.stringify({ status: "interrupted", step: 5 }));
  writeFileSync(join(trunc, "metrics.jsonl"), [1, 2, 3, 4, 5].map((s) => line(s)).join("") + '{"step":6,"loss":0.0');
  // a checkpoint the config asks for is missing
  const miss = join(runs, "missingckpt");
  cpSync(good, miss, { recursive: true });
  rmSync(join(miss, "checkpoints", "step-0000010.safetensors"));
  // a corrupt checkpoint
  const corrupt = join(runs, "corrupt");
  cpSync(good, corrupt, { recursive: true });
  rmSync(join(corrupt, "analysis"), { recursive: true, force: true });
  truncateSync(join(corrupt, "checkpoints", "step-0000020.safetensors"), 100);
  // a config that is not JSON
  const bad = join(runs, "badconfig");
  mkdirSync(bad);
  writeFileSync(join(bad, "config.json"), "{not json");
  writeFileSync(join(bad, "metrics.jsonl"), line(1));
  // a run being written (SSE)
  const live = join(runs, "live");
  mkdirSync(live);
  cpSync(join(good, "config.json"), join(live, "config.json"));
  writeFileSync(join(live, "status.json"), JSON.stringify({ status: "running", step: 3, pid: process.pid }));
  writeFileSync(join(live, "metrics.jsonl"), [1, 2, 3].map((s) => line(s)).join(""));
  // not runs: an empty folder, and a link to a run outside the runs folder
  mkdirSync(join(runs, "empty"));
  const outside = join(top, "outside");
  cpSync(good, outside, { recursive: true });
  writeFileSync(join(top, "secret.json"), '{"secret": true}');
  symlinkSync(outside, join(runs, "escape"));
  symlinkSync(join(top, "secret.json"), join(good, "link.json"));
  srv = await startServer({ runsDir: runs, port: 0, pollMs: 100 });
});

after(async () => {
  await srv?.close();
  rmSync(top, { recursive: true, force: true });
});

test("traversal and absolute paths: 400 or 404, never a file outside the runs folder", async () => {
  const cases: Array<[string, number[]]> = [
    ["/../../etc/passwd", [400]],
    ["/..%2f..%2fetc%2fpasswd", [400]],
    ["/api/runs/..%2F..%2Fetc/metrics", [400]],
    ["/api/runs/%2e%2e/metrics", [400]],
    ["/api/runs/%2e%2e%2fsecret.json", [400]],
    ["/api/runs/%2Fetc/metrics", [400]],
    ["/api/runs/good/files/..%2F..%2Fsecret.json", [400]],
    ["/api/runs/good/files/%2Fetc%2Fpasswd", [400]],
    ["/api/runs/good/files/..%5C..%5Csecret.json", [400]],
    ["/api/runs/good%00/metrics", [400]],
    ["/assets/..%2F..%2F..%2Fpackage.json", [400]],
    ["//etc/passwd", [400]],
    ["/etc/passwd", [404]],
    ["/api/runs/nosuch/metrics", [404]],
    ["/api/runs/escape/metrics", [404]],
    ["/api/runs/escape/files/config.json", [404]],
    ["/api/runs/good/files/link.json", [404]],
    ["/api/runs/good/files/checkpoints/step-0000010.safetensors", [404]],
  ];
  for (const [path, want] of cases) {
    const r = await get(path);
    assert.ok(want.includes(r.status), `${path}: status ${r.status}, body ${r.body.slice(0, 200)}`);
    assert.doesNotMatch(r.body, /secret|root:x:0/, path);
  }
  const ok = await get("/api/runs/good/files/config.json");
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).data.m, 4);
});

test("GET /api/sweep on a plain runs folder: no sweep", async () => {
  const r = await get("/api/sweep");
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body), { sweep: null });
  assert.equal((await get("/api/sweep/cells")).status, 404);
});

test("runs list: malformed folders are listed with what is wrong, non-runs and escaping links are not", async () => {
  const r = await get("/api/runs");
  assert.equal(r.status, 200);
  const list = JSON.parse(r.body).runs as Array<{ name: string; status: string; problems: string[]; checkpoints: number[]; stepsDone: number }>;
  const by = new Map(list.map((x) => [x.name, x]));
  assert.deepEqual([...by.keys()].sort(), ["badconfig", "corrupt", "good", "live", "missingckpt", "truncated"]);
  assert.equal(by.get("good")!.status, "finished");
  assert.deepEqual(by.get("good")!.problems, []);
  assert.deepEqual(by.get("good")!.checkpoints, [10, 20]);
  assert.equal(by.get("truncated")!.status, "interrupted");
  assert.equal(by.get("truncated")!.stepsDone, 5);
  assert.ok(by.get("truncated")!.problems.some((p) => /truncated line/.test(p)), JSON.stringify(by.get("truncated")));
  assert.ok(by.get("missingckpt")!.problems.some((p) => /missing checkpoint at step 10/.test(p)), JSON.stringify(by.get("missingckpt")));
  assert.equal(by.get("badconfig")!.status, "malformed");
  assert.ok(by.get("badconfig")!.problems.some((p) => /config\.json is not valid JSON/.test(p)));
  assert.equal(by.get("live")!.status, "running");
});

test("metrics API returns every step, compact rows and the byte offset", async () => {
  const r = await get("/api/runs/good/metrics");
  assert.equal(r.status, 200);
  const m = JSON.parse(r.body) as { offset: number; rows: Array<Array<number | null>>; bad: number };
  assert.deepEqual(m.rows.map((x) => x[0]), Array.from({ length: 20 }, (_, i) => i + 1));
  assert.equal(m.offset, readFileSync(join(runs, "good", "metrics.jsonl")).length);
  assert.ok(m.rows.every((x) => typeof x[1] === "number" && x[1] > 0));
  assert.equal(typeof m.rows[4]![4], "number"); // eval every 5 steps
  assert.equal(m.rows[3]![4], null);
  // the progress measures (attn progress, collapse, repetition) at the steps that logged them
  assert.ok(m.rows[3]!.slice(5).every((x) => typeof x === "number" && x >= -1 && x <= 1), JSON.stringify(m.rows[3])); // collapse is a mean cosine: may be slightly negative
  assert.deepEqual(m.rows[2]!.slice(5), [null, null, null]);
  const t = JSON.parse((await get("/api/runs/truncated/metrics")).body) as { rows: unknown[]; partial: number };
  assert.equal(t.rows.length, 5);
  assert.ok(t.partial > 0);
});

test("server-sent events deliver only the appended lines, a split line once complete", async () => {
  const file = join(runs, "live", "metrics.jsonl");
  const offset = readFileSync(file).length;
  const u = new URL(srv.url);
  const got: number[] = [];
  let runEvents = 0;
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`timeout; got steps ${got.join(",")}`)), 15000);
    const req = request({ host: u.hostname, port: u.port, path: `/api/runs/live/events?offset=${offset}` }, (res) => {
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers["content-type"]), /text\/event-stream/);
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const name = /^event: (.*)$/m.exec(ev)?.[1];
          const data = /^data: (.*)$/m.exec(ev)?.[1];
          if (name === "run") {
            runEvents++;
            if (runEvents === 1) {
              // the stream is open: append two lines and half of a third
              appendFileSync(file, line(4) + line(5) + line(6).slice(0, 10));
              setTimeout(() => appendFileSync(file, line(6).slice(10) + line(7)), 400);
            }
          }
          if (name === "metrics") {
            const d = JSON.parse(data!) as { items: Array<Array<number>> };
            got.push(...d.items.map((x) => x[0]!));
            if (got.length >= 4) {
              clearTimeout(timer);
              req.destroy();
              ok();
            }
          }
        }
      });
    });
    req.on("error", (e) => { if (got.length < 4) fail(e); });
    req.end();
  });
  assert.deepEqual(got, [4, 5, 6, 7]);
});

test("analyses: computed from the checkpoint, cached as abrupt analyze's JSON, then served from the cache", async () => {
  const path = "/api/runs/good/analysis/attention?step=20&opt=batch=8";
  const a = await get(path);
  assert.equal(a.status, 200, a.body);
  assert.equal(a.headers["x-abrupt-cache"], "miss");
  const j = JSON.parse(a.body) as { experiment: string; step: number; seed: number; m: number; T: number; conditions: Array<{ meanPattern: number[][][] }>; findings: string[] };
  assert.equal(j.experiment, "attention");
  assert.equal(j.step, 20);
  assert.equal(j.T, 16);
  assert.equal(j.conditions[0]!.meanPattern[0]![0]!.length, 16 * 16);
  const files = readdirSync(join(runs, "good", "analysis"));
  assert.ok(files.some((f) => /^attention-step-20-[0-9a-f]{10}\.json$/.test(f)), files.join(","));
  const b = await get(path);
  assert.equal(b.headers["x-abrupt-cache"], "hit");
  assert.equal(b.body, readFileSync(join(runs, "good", "analysis", files.find((f) => f.startsWith("attention-step-20"))!), "utf8"));
  const s = await get("/api/runs/good/analysis/sample?step=10&seed=3");
  assert.equal(s.status, 200, s.body);
  const sj = JSON.parse(s.body) as { input: Array<Array<number | null>>; prediction: number[][] };
  assert.equal(sj.input.length, 4);
  assert.equal(sj.prediction[0]!.length, 4);
  assert.ok(existsSync(join(runs, "good", "analysis", "sample-step-10-seed-3-random.json")));
});

test("a plain cache file (as abrupt analyze all writes it) is used only if it records the default options", async () => {
  const dir = join(runs, "good", "analysis");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "attention-step-20.json");
  // made with other options (e.g. `analyze all --opt batch=8`): recomputed
  writeFileSync(file, JSON.stringify({ experiment: "attention", step: 20, seed: 0, options: { batch: 8 }, marker: "stale", findings: [] }));
  const a = await get("/api/runs/good/analysis/attention?step=20");
  assert.equal(a.status, 200, a.body);
  assert.equal(a.headers["x-abrupt-cache"], "miss");
  const fresh = JSON.parse(readFileSync(file, "utf8")) as { options: Record<string, unknown>; marker?: string };
  assert.equal(fresh.marker, undefined);
  assert.notEqual(fresh.options["batch"], 8);
  // with the default options recorded: served as it is
  writeFileSync(file, JSON.stringify({ ...fresh, marker: "kept" }));
  const b = await get("/api/runs/good/analysis/attention?step=20");
  assert.equal(b.headers["x-abrupt-cache"], "hit");
  assert.equal((JSON.parse(b.body) as { marker?: string }).marker, "kept");
});

test("analysis errors are answers, not crashes", async () => {
  assert.equal((await get("/api/runs/good/analysis/attention?step=7")).status, 404);
  assert.equal((await get("/api/runs/missingckpt/analysis/attention?step=10&opt=batch=8")).status, 404);
  assert.equal((await get("/api/runs/good/analysis/attention?step=20&opt=colour=3")).status, 400);
  assert.equal((await get("/api/runs/good/analysis/attention?step=abc")).status, 400);
  assert.equal((await get("/api/runs/good/analysis/nope?step=20")).status, 404);
  const c = await get("/api/runs/corrupt/analysis/attention?step=20&opt=batch=8");
  assert.ok(c.status === 400 || c.status === 500, `${c.status} ${c.body}`);
  assert.match(JSON.parse(c.body).error, /step-0000020|safetensors|truncated|header/i);
  // the server still answers
  assert.equal((await get("/api/runs")).status, 200);
  assert.equal((await get("/api/runs/good/analysis/attention?step=20&opt=batch=8")).status, 200);
});
