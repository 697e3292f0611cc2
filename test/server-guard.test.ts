// `abrupt serve` cannot be blocked or abused: a request's options are
// bounded, each analysis has a time limit, a running analysis whose client
// went away is stopped (its worker killed, the queue free again), requests
// with another Host or Origin or from another site are refused, run files are
// served sandboxed, and listening beyond loopback prints a warning.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JobEvent, type RunningServer, startServer } from "../src/server/server.js";
import { bin, root } from "./helpers/cli.js";

const top = mkdtempSync(join(tmpdir(), "abrupt-guard-"));
const runs = join(top, "runs");
const run = join(runs, "r");
const servers: RunningServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
  rmSync(top, { recursive: true, force: true });
});

async function serve(jobTimeoutMs?: number) {
  const events: JobEvent[] = [];
  const waiters: Array<{ event: string; ok: (e: JobEvent) => void }> = [];
  const srv = await startServer({
    runsDir: runs, port: 0, pollMs: 100, ...(jobTimeoutMs !== undefined ? { jobTimeoutMs } : {}),
    onJob: (e) => {
      events.push(e);
      for (const w of waiters.splice(0)) if (w.event === e.event) w.ok(e); else waiters.push(w);
    },
  });
  servers.push(srv);
  /** the next job event of this kind (or one that already happened) */
  const next = (event: JobEvent["event"]) => new Promise<JobEvent>((ok) => {
    const seen = events.find((e) => e.event === event);
    if (seen) { events.splice(events.indexOf(seen), 1); ok(seen); } else waiters.push({ event, ok });
  });
  return { srv, events, next };
}

interface Reply { status: number; body: string; headers: Record<string, string | string[] | undefined> }
function get(srv: RunningServer, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  const u = new URL(srv.url);
  return new Promise((ok, fail) => {
    const req = request({ host: u.hostname, port: u.port, path, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => ok({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on("error", fail);
    req.end();
  });
}

const dead = (pid: number) => { try { process.kill(pid, 0); return false; } catch (e) { return (e as NodeJS.ErrnoException).code === "ESRCH"; } };
async function waitDead(pid: number): Promise<void> {
  for (let i = 0; i < 500 && !dead(pid); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(dead(pid), `worker ${pid} still runs`);
}

before(() => {
  mkdirSync(runs, { recursive: true });
  const r = spawnSync(process.execPath, [bin, "train", "--m", "4", "--n", "4", "--rank", "1", "--layers", "1", "--heads", "2", "--width", "16", "--ff", "32",
    "--positions", "16", "--batch", "8", "--steps", "4", "--ckpt-every", "2", "--ckpt-log", "0", "--eval-every", "0", "--threads", "1", "--out", run, "--quiet"], { encoding: "utf8", cwd: root });
  assert.equal(r.status, 0, r.stderr);
  writeFileSync(join(run, "evil.html"), "<script>fetch('/api/runs')</script>");
  writeFileSync(join(run, "evil.svg"), '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');
});

test("a request's options are bounded: 400 before any job starts", async () => {
  const { srv, events } = await serve();
  const big = await get(srv, "/api/runs/r/analysis/attention?step=4&opt=batch=1000000");
  assert.equal(big.status, 400, big.body);
  assert.match(JSON.parse(big.body).error, /batch=1000000 is more than the dashboard allows \(1024\)/);
  assert.equal((await get(srv, "/api/runs/r/analysis/probe?step=4&opt=train=1000000000000")).status, 400);
  assert.equal((await get(srv, "/api/runs/r/analysis/embeddings?step=4&opt=tsneIterations=100000")).status, 400);
  assert.equal((await get(srv, `/api/runs/r/analysis/attention?step=4&opt=mask=${"x".repeat(3000)}`)).status, 400);
  assert.equal((await get(srv, "/api/runs/r/analysis/attention?step=4&seed=1099511627776")).status, 400);
  assert.deepEqual(events, [], "a job was started");
});

test("an analysis that runs past the time limit is stopped; the server goes on", async () => {
  const { srv, next } = await serve(50); // far less than a worker needs to start and load a checkpoint
  const r = await get(srv, "/api/runs/r/analysis/attention?step=4&opt=batch=64");
  assert.equal(r.status, 503, r.body);
  assert.match(JSON.parse(r.body).error, /time limit/);
  const ev = await next("timeout");
  await waitDead(ev.pid!);
  assert.equal((await get(srv, "/api/runs")).status, 200);
});

test("a running analysis whose client disconnects is stopped and frees the queue", async () => {
  const { srv, next } = await serve();
  const u = new URL(srv.url);
  const path = "/api/runs/r/analysis/probe?step=4&opt=train=8192&opt=test=2048";
  const req = request({ host: u.hostname, port: u.port, path });
  req.on("error", () => { /* we hang up */ });
  req.end();
  const started = await next("start");
  req.destroy();
  const cancelled = await next("cancelled");
  assert.equal(cancelled.pid, started.pid);
  await waitDead(started.pid!);
  const files = existsSync(join(run, "analysis")) ? readdirSync(join(run, "analysis")) : [];
  assert.ok(!files.some((f) => f.startsWith("probe-step-4")), `the stopped job wrote ${files.join(", ")}`);
  // the queue is free: the next analysis is computed in a fresh worker
  const ok = await get(srv, "/api/runs/r/analysis/attention?step=4&opt=batch=16");
  assert.equal(ok.status, 200, ok.body);
  assert.notEqual((await next("done")).pid, started.pid);
});

test("another Host, another Origin or a cross-site fetch is refused; run files are sandboxed", async () => {
  const { srv } = await serve();
  const port = new URL(srv.url).port;
  const cases: Array<[Record<string, string>, number]> = [
    [{}, 200],
    [{ host: `localhost:${port}` }, 200],
    [{ host: `evil.example:${port}` }, 403],
    [{ host: `127.0.0.1:${Number(port) + 1}` }, 403],
    [{ origin: "http://evil.example" }, 403],
    [{ origin: `http://127.0.0.1:${port}` }, 200],
    [{ "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" }, 403],
    [{ "sec-fetch-site": "same-site", "sec-fetch-mode": "cors" }, 403],
    [{ "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors" }, 200],
  ];
  for (const [h, want] of cases) assert.equal((await get(srv, "/api/runs", h)).status, want, JSON.stringify(h));
  assert.equal((await get(srv, "/api/runs/r/analysis/attention?step=4&opt=batch=8", { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" })).status, 403);
  // a link from another site to the dashboard page still opens it
  assert.equal((await get(srv, "/", { "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" })).status, 200);
  for (const f of ["evil.html", "evil.svg", "config.json"]) {
    const r = await get(srv, `/api/runs/r/files/${f}`);
    assert.equal(r.status, 200);
    const csp = String(r.headers["content-security-policy"]);
    assert.match(csp, /\bsandbox\b/, f);
    assert.match(csp, /default-src 'none'/, f);
    assert.equal(r.headers["x-content-type-options"], "nosniff");
  }
});

test("serve --host 0.0.0.0 warns that there is no authentication", async () => {
  const child = spawn(process.execPath, [bin, "serve", runs, "--port", "0", "--host", "0.0.0.0"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((ok) => child.on("exit", () => ok()));
  await new Promise<void>((ok) => child.stdout.on("data", (c: Buffer) => { out += c.toString(); if (/http:\/\//.test(out)) ok(); }));
  child.kill("SIGTERM");
  await exited;
  assert.match(err, /warning: listening on 0\.0\.0\.0 with no authentication/);
  const local = spawn(process.execPath, [bin, "serve", runs, "--port", "0"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let lerr = "", lout = "";
  local.stderr.on("data", (c: Buffer) => (lerr += c.toString()));
  const lexit = new Promise<void>((ok) => local.on("exit", () => ok()));
  await new Promise<void>((ok) => local.stdout.on("data", (c: Buffer) => { lout += c.toString(); if (/http:\/\//.test(lout)) ok(); }));
  local.kill("SIGTERM");
  await lexit;
  assert.doesNotMatch(lerr, /warning/);
});
