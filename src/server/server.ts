// `abrupt serve`: a local HTTP server (node:http) for the dashboard.
//
//   GET /                                  the page (dist/web, built by Vite)
//   GET /assets/<file>                     its bundled scripts and styles
//   GET /api/runs                          { root, runs: RunSummary[] }
//   GET /api/runs/<run>                    RunSummary (config, status, problems, checkpoints, phases)
//   GET /api/runs/<run>/metrics            { offset, bad, partial, rows: [step, L, L_mask, L_obs, eval L, attn progress, collapse, repetition (each | null)][] }
//   GET /api/runs/<run>/events?offset=N    server-sent events: `metrics` { offset, items } with only
//                                          the lines appended after byte N, `run` (RunSummary) when the
//                                          status, checkpoints or phases change, `reset` if the file shrank
//   GET /api/runs/<run>/analysis/<kind>?step=N[&seed=S][&opt=key=value…]
//                                          the analysis JSON (the same as `abrupt analyze`), computed
//                                          from the checkpoint on first request and cached under
//                                          <run>/analysis/ (header X-Abrupt-Cache: hit | miss)
//   GET /api/runs/<run>/files/<path>       a file of the run (json, jsonl, svg, png, md, html)
//   GET /api/sweep                         { sweep: SweepResults | null } (sweep.ts); RUNS_DIR may be a
//                                          sweep folder, whose runs are RUNS_DIR/runs/*
//
// Only files inside the runs folder (and the page's own assets) are served:
// `..`, absolute paths, backslashes, NUL and their percent-encoded forms are
// rejected with 400, unknown runs and files give 404. Run files are served
// sandboxed (Content-Security-Policy: sandbox), so an .html or .svg in a run
// folder runs no script on the dashboard's origin. Requests with another
// Host (DNS rebinding) or Origin, or cross-site fetches, get 403. Analyses
// run in one child process (worker.ts), one at a time, in request order,
// with bounded options (compute.ts boundOptions) and a time limit; a job
// whose clients all went away is dropped, or stopped if it is running.

import { type ChildProcess, fork } from "node:child_process";
import { createReadStream, existsSync, readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { AbruptError } from "../errors.js";
import { DEFAULT_FAMILY, familyNamed } from "../family/index.js";
import type { MetricsLine } from "../train/metrics.js";
import { type ComputeRequest, type Kind, PER_RUN, PER_STEP, boundOptions, cacheName, isKind, isPerRun, lookupCache } from "./compute.js";
import { SweepResultsCache, isSweepDir } from "./sweep.js";
import { MetricsCache, type MetricsItem, PathError, metricsRow, type RunSummary, isInside, listRunNames, readMetricsFrom, runDir, runFile, summarizeRun } from "./runs.js";
import type { MetricsEvent, MetricsResponse, MetricsRow, MetricsRowItem, RunsResponse, SweepResponse } from "./wire.js";

const HERE = dirname(fileURLToPath(import.meta.url));
/** dist/web, next to dist/src/server */
export const DEFAULT_WEB_DIR = resolve(HERE, "../../web");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8", ".jsonl": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
  ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2", ".map": "application/json",
};
const RUN_FILE_TYPES = new Set([".json", ".jsonl", ".svg", ".png", ".md", ".html"]);

export interface ServeOptions {
  runsDir: string;
  host?: string;
  port?: number;
  webDir?: string;
  /** ms between checks of a watched run (fs.watch also triggers them) */
  pollMs?: number;
  /** the longest an analysis may run before its worker is stopped (default 300 s) */
  jobTimeoutMs?: number;
  /** called for each job of the analysis queue (start, done, cancelled, timeout) */
  onJob?: (ev: JobEvent) => void;
}

/**
 * Run files are data, never part of the page: an .html or .svg in a run
 * folder is served sandboxed (a unique origin, no scripts, no requests).
 */
const RUN_FILE_HEADERS = {
  "content-security-policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
  "x-content-type-options": "nosniff",
};

const LOOPBACK = new Set(["localhost", "127.0.0.1", "::1"]);
export const isLoopback = (host: string) => LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
const isWildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "";

/**
 * Refuses requests another web page makes the browser send (403): a Host
 * header that is not this server's (DNS rebinding), an Origin that is not
 * its own, and cross-site fetches (Sec-Fetch-Site), except a plain link to
 * the dashboard page.
 */
function checkCaller(req: IncomingMessage, listenHost: string, port: number, isPage: boolean): void {
  const hostHeader = req.headers.host;
  if (hostHeader !== undefined && !isWildcard(listenHost)) {
    const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(hostHeader);
    const name = (m?.[1] ?? m?.[2] ?? "").toLowerCase();
    const ok = m && Number(m[3] ?? 80) === port && (name === listenHost.toLowerCase() || (isLoopback(listenHost) && isLoopback(name)));
    if (!ok) throw new HttpError(403, `host ${hostHeader} is not this server`);
  }
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== `http://${hostHeader}`) throw new HttpError(403, `requests from ${origin} are not allowed`);
  const site = req.headers["sec-fetch-site"];
  if ((site === "cross-site" || site === "same-site") && !(isPage && req.headers["sec-fetch-mode"] === "navigate")) {
    throw new HttpError(403, "requests from other sites are not allowed");
  }
}

export interface RunningServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

function itemOut(it: MetricsItem, measures: readonly string[]): MetricsRowItem {
  return "resume_from" in it ? { resume_from: it.resume_from } : metricsRow(it, measures);
}

interface SseClient { res: ServerResponse; offset: number }

/** One run folder being watched: its metrics cache, SSE clients, last summary sent. */
class RunWatch {
  metrics: MetricsCache;
  clients = new Set<SseClient>();
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private lastKey = "";
  private last: RunSummary | null = null;
  constructor(readonly root: string, readonly name: string, readonly dir: string, private pollMs: number) {
    this.metrics = new MetricsCache(join(dir, "metrics.jsonl"));
  }

  summary(): RunSummary {
    this.metrics.update();
    this.last = summarizeRun(this.root, this.name, this.metrics);
    return this.last;
  }

  /** The metrics fields of the rows' measure columns: the run's family's (from the latest summary's config). */
  measures(): readonly string[] {
    return familyNamed((this.last ?? this.summary()).family ?? DEFAULT_FAMILY).measureColumns;
  }

  add(c: SseClient): void {
    this.clients.add(c);
    if (!this.timer) {
      this.lastKey = this.key(this.summary());
      this.timer = setInterval(() => this.tick(), this.pollMs);
      try {
        this.watcher = watch(this.dir, () => this.soon());
        this.watcher.on("error", () => { this.watcher?.close(); this.watcher = null; });
      } catch { /* the interval still checks */ }
    }
    this.tick();
  }

  remove(c: SseClient): void {
    this.clients.delete(c);
    if (this.clients.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.watcher?.close();
    this.timer = this.debounce = null;
    this.watcher = null;
  }

  private soon(): void {
    if (this.debounce) return;
    this.debounce = setTimeout(() => { this.debounce = null; this.tick(); }, 50);
  }

  private key(s: RunSummary): string {
    return JSON.stringify([s.status, s.problems, s.checkpoints, s.phases?.plateau?.onset, s.phases?.plateau?.end, s.phases?.drop?.step, s.error]);
  }

  /** Sends each client the lines appended since its offset, and the summary when it changed. */
  tick(): void {
    const file = this.metrics.file;
    let size = 0;
    try { size = statSync(file).size; } catch { size = 0; }
    for (const c of this.clients) {
      if (size < c.offset) {
        send(c.res, "reset", {});
        c.offset = 0;
        continue;
      }
      if (size === c.offset) continue;
      const ch = readMetricsFrom(file, c.offset);
      if (ch.offset !== c.offset) {
        c.offset = ch.offset;
        send(c.res, "metrics", { offset: ch.offset, bad: ch.bad, items: ch.items.map((it) => itemOut(it, this.measures())) } satisfies MetricsEvent);
      }
    }
    const s = this.summary();
    const k = this.key(s);
    if (k !== this.lastKey) {
      this.lastKey = k;
      for (const c of this.clients) send(c.res, "run", s);
    }
  }
}

function send(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** What the analysis queue did with a job (ServeOptions.onJob: for logs and tests). */
export interface JobEvent {
  event: "start" | "done" | "cancelled" | "timeout";
  /** the analysis, e.g. "attention" */
  analysis: string;
  /** the worker process the job ran in (start, done, cancelled, timeout) */
  pid: number | null;
}

interface Job { req: ComputeRequest; waiters: number; resolve: (f: string) => void; reject: (e: Error) => void; promise: Promise<string> }

/**
 * The analysis queue: one child process, one job at a time, identical
 * requests shared. A job runs at most `timeoutMs`; a job whose clients all
 * went away is dropped from the queue, or, when it is running, stopped by
 * killing its worker (the next job starts a fresh one).
 */
class Analyses {
  private child: ChildProcess | null = null;
  private jobs = new Map<string, Job>();
  private pending: string[] = [];
  private running: { key: string; id: number; child: ChildProcess; timer: NodeJS.Timeout } | null = null;
  private nextId = 1;
  constructor(private workerFile: string, private timeoutMs: number, private onJob?: (ev: JobEvent) => void) {}

  /** Resolves with the file holding the result. `signal` aborts the wait (and the job if nobody else waits). */
  request(req: ComputeRequest, signal: AbortSignal): Promise<string> {
    const key = JSON.stringify([req.dir, req.kind, req.step, req.seed, req.opts]);
    let job = this.jobs.get(key);
    if (!job) {
      let resolve!: (f: string) => void, reject!: (e: Error) => void;
      const promise = new Promise<string>((a, b) => { resolve = a; reject = b; });
      job = { req, waiters: 0, resolve, reject, promise };
      this.jobs.set(key, job);
      this.pending.push(key);
      setImmediate(() => this.pump());
    }
    const j = job;
    j.waiters++;
    signal.addEventListener("abort", () => {
      j.waiters--;
      if (j.waiters > 0 || this.jobs.get(key) !== j) return;
      const i = this.pending.indexOf(key);
      if (i >= 0) {
        this.pending.splice(i, 1);
        this.jobs.delete(key);
        j.reject(new HttpError(499, "request cancelled"));
        this.onJob?.({ event: "cancelled", analysis: j.req.kind, pid: null });
      } else if (this.running?.key === key) {
        this.stopRunning(new HttpError(499, "request cancelled"), "cancelled");
      }
    }, { once: true });
    return j.promise;
  }

  /** Ends the running job with `err` and kills its worker. */
  private stopRunning(err: HttpError, event: "cancelled" | "timeout"): void {
    const r = this.running;
    if (!r) return;
    clearTimeout(r.timer);
    this.running = null;
    const job = this.jobs.get(r.key);
    this.jobs.delete(r.key);
    if (this.child === r.child) this.child = null;
    r.child.kill("SIGKILL");
    job?.reject(err);
    this.onJob?.({ event, analysis: job?.req.kind ?? "", pid: r.child.pid ?? null });
    setImmediate(() => this.pump());
  }

  private finish(child: ChildProcess, id: number, outcome: { file: string } | { error: HttpError }): void {
    const r = this.running;
    if (!r || r.child !== child || r.id !== id) return;
    clearTimeout(r.timer);
    this.running = null;
    const job = this.jobs.get(r.key);
    this.jobs.delete(r.key);
    if (job) {
      if ("file" in outcome) job.resolve(outcome.file);
      else job.reject(outcome.error);
      this.onJob?.({ event: "done", analysis: job.req.kind, pid: child.pid ?? null });
    }
    this.pump();
  }

  private spawn(): ChildProcess {
    const child = fork(this.workerFile, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    child.on("message", (msg: { id: number; ok: boolean; file?: string; error?: string; user?: boolean }) => {
      const error = msg.user ? new HttpError(/does not exist/.test(msg.error ?? "") ? 404 : 400, msg.error!) : new HttpError(500, msg.error ?? "analysis failed");
      this.finish(child, msg.id, msg.ok ? { file: msg.file! } : { error });
    });
    child.on("exit", (code, sig) => {
      if (this.child === child) this.child = null;
      if (this.running?.child === child) this.finish(child, this.running.id, { error: new HttpError(500, `analysis process ended (${sig ?? `exit ${code}`})`) });
    });
    return child;
  }

  private pump(): void {
    if (this.running || this.pending.length === 0) return;
    const key = this.pending.shift()!;
    const job = this.jobs.get(key)!;
    const id = this.nextId++;
    if (!this.child || this.child.exitCode !== null || !this.child.connected) this.child = this.spawn();
    const limit = this.timeoutMs;
    const timer = setTimeout(() => this.stopRunning(new HttpError(503, `analysis stopped after ${limit / 1000} s, the server's time limit (abrupt serve --job-timeout S; or run it with abrupt analyze)`), "timeout"), limit);
    this.running = { key, id, child: this.child, timer };
    this.onJob?.({ event: "start", analysis: job.req.kind, pid: this.child.pid ?? null });
    this.child.send({ id, req: job.req });
  }

  close(): void {
    if (this.running) clearTimeout(this.running.timer);
    this.running = null;
    for (const [, j] of this.jobs) j.reject(new HttpError(503, "server closing"));
    this.jobs.clear();
    this.pending = [];
    this.child?.kill();
    this.child = null;
  }
}

/** Splits and decodes the request path; 400 for anything that could leave its folder. */
export function pathSegments(rawUrl: string): { segs: string[]; query: URLSearchParams } {
  if (!rawUrl.startsWith("/")) throw new HttpError(400, "bad request path");
  const q = rawUrl.indexOf("?");
  const rawPath = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const query = new URLSearchParams(q >= 0 ? rawUrl.slice(q + 1) : "");
  if (/\\|%5c|%00|\0/i.test(rawPath) || rawPath.includes("//")) throw new HttpError(400, "bad request path");
  const segs = rawPath.split("/").slice(1);
  if (segs.length > 0 && segs[segs.length - 1] === "") segs.pop();
  return {
    query,
    segs: segs.map((s) => {
      let d: string;
      try { d = decodeURIComponent(s); } catch { throw new HttpError(400, "bad request path"); }
      if (d === "" || d === "." || d === ".." || d.includes("/") || d.includes("\\") || d.includes("\0") || d.includes("..")) throw new HttpError(400, "bad request path");
      return d;
    }),
  };
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, obj: unknown, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(obj, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v)));
  sendBody(req, res, status, body, TYPES[".json"]!, headers);
}

function sendBody(req: IncomingMessage, res: ServerResponse, status: number, body: Buffer, type: string, headers: Record<string, string> = {}): void {
  const gz = body.length > 2048 && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
  const out = gz ? gzipSync(body) : body;
  res.writeHead(status, { "content-type": type, "content-length": out.length, "cache-control": "no-store", ...(gz ? { "content-encoding": "gzip" } : {}), ...headers });
  res.end(req.method === "HEAD" ? undefined : out);
}

function sendFile(req: IncomingMessage, res: ServerResponse, file: string, cache: boolean, headers: Record<string, string> = {}): void {
  const type = TYPES[extname(file)] ?? "application/octet-stream";
  if (type.startsWith("text/") || type.startsWith("application/json") || type === "image/svg+xml") {
    sendBody(req, res, 200, readFileSync(file), type, { ...(cache ? { "cache-control": "max-age=3600" } : {}), ...headers });
    return;
  }
  res.writeHead(200, { "content-type": type, "content-length": statSync(file).size, "cache-control": cache ? "max-age=3600" : "no-store", ...headers });
  if (req.method === "HEAD") { res.end(); return; }
  createReadStream(file).pipe(res);
}

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const top = resolve(opts.runsDir);
  if (!existsSync(top) || !statSync(top).isDirectory()) throw new AbruptError(`runs folder ${opts.runsDir} does not exist`);
  const root = isSweepDir(top) ? join(top, "runs") : top;
  const webDir = resolve(opts.webDir ?? DEFAULT_WEB_DIR);
  const host = opts.host ?? "127.0.0.1";
  const pollMs = opts.pollMs ?? 1000;
  const watches = new Map<string, RunWatch>();
  const analyses = new Analyses(join(HERE, "worker.js"), opts.jobTimeoutMs ?? 300_000, opts.onJob);
  let port = 0;
  const sseClients = new Set<ServerResponse>();

  const watchOf = (name: string): RunWatch => {
    const dir = runDir(root, name);
    let w = watches.get(name);
    if (!w || w.dir !== dir) {
      w = new RunWatch(root, name, dir, pollMs);
      watches.set(name, w);
    }
    return w;
  };
  const sweep = root !== top ? new SweepResultsCache(top, (name) => watchOf(name).metrics) : null;

  const api = async (req: IncomingMessage, res: ServerResponse, segs: string[], query: URLSearchParams): Promise<void> => {
    if (segs.length === 1) {
      const runs = listRunNames(root).map((name) => {
        try {
          return watchOf(name).summary();
        } catch (e) {
          return { name, status: "malformed", problems: [(e as Error).message] } as unknown as RunSummary;
        }
      });
      sendJson(req, res, 200, { root, runs } satisfies RunsResponse);
      return;
    }
    const name = segs[1]!;
    const w = watchOf(name); // 400/404 for bad names
    if (segs.length === 2) { sendJson(req, res, 200, w.summary()); return; }
    const what = segs[2]!;
    if (what === "metrics" && segs.length === 3) {
      w.metrics.update();
      sendJson(req, res, 200, { offset: w.metrics.offset, bad: w.metrics.bad, partial: w.metrics.partial, rows: w.metrics.lines.map((l) => metricsRow(l, w.measures())) } satisfies MetricsResponse);
      return;
    }
    if (what === "events" && segs.length === 3) {
      const offset = Number(query.get("offset") ?? "0");
      if (!Number.isInteger(offset) || offset < 0) throw new HttpError(400, "offset must be a byte offset");
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
      res.write(": abrupt metrics stream\nretry: 1000\n\n");
      const c: SseClient = { res, offset };
      sseClients.add(res);
      const ping = setInterval(() => res.write(": ping\n\n"), 15000);
      req.on("close", () => { clearInterval(ping); sseClients.delete(res); w.remove(c); });
      send(res, "run", w.summary());
      w.add(c);
      return;
    }
    if (what === "analysis" && segs.length === 4) {
      const kind = segs[3]!;
      if (!isKind(kind)) throw new HttpError(404, `no analysis "${kind}" (analyses: ${[...PER_STEP, ...PER_RUN].join(", ")})`);
      const stepRaw = query.get("step");
      const step = stepRaw === null ? -1 : Number(stepRaw);
      if (!isPerRun(kind) && (!Number.isInteger(step) || step < 0)) throw new HttpError(400, "step must be a checkpoint step number");
      const seed = Number(query.get("seed") ?? "0");
      if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new HttpError(400, "seed must be an integer in 0..4294967295");
      const o: Record<string, string> = {};
      for (const p of query.getAll("opt")) {
        const i = p.indexOf("=");
        if (i <= 0) throw new HttpError(400, `opt must be key=value (got "${p}")`);
        o[p.slice(0, i)] = p.slice(i + 1);
      }
      const creq: ComputeRequest = { dir: w.dir, kind: kind as Kind, step: isPerRun(kind) ? -1 : step, seed, opts: o };
      try { cacheName(creq); boundOptions(creq); } catch (e) { throw new HttpError(400, (e as Error).message); }
      const hit = lookupCache(creq);
      if (hit) { sendBody(req, res, 200, readFileSync(hit.file), TYPES[".json"]!, { "x-abrupt-cache": "hit" }); return; }
      const ac = new AbortController();
      res.on("close", () => { if (!res.writableFinished) ac.abort(); });
      const file = await analyses.request(creq, ac.signal);
      if (!isInside(w.dir, file)) throw new HttpError(500, "analysis written outside the run");
      sendBody(req, res, 200, readFileSync(file), TYPES[".json"]!, { "x-abrupt-cache": "miss" });
      return;
    }
    if (what === "files" && segs.length >= 4) {
      const rel = segs.slice(3).join("/");
      if (!RUN_FILE_TYPES.has(extname(rel))) throw new HttpError(404, `files of type ${extname(rel) || "(none)"} are not served`);
      sendFile(req, res, runFile(root, name, rel), false, RUN_FILE_HEADERS);
      return;
    }
    throw new HttpError(404, "no such API route");
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      if (req.method !== "GET" && req.method !== "HEAD") throw new HttpError(405, "only GET");
      const { segs, query } = pathSegments(req.url ?? "/");
      checkCaller(req, host, port, segs.length === 0 || (segs.length === 1 && segs[0] === "index.html"));
      if (segs[0] === "api" && segs[1] === "runs") { await api(req, res, segs.slice(1), query); return; }
      if (segs[0] === "api" && segs[1] === "sweep" && segs.length === 2) { sendJson(req, res, 200, { sweep: sweep?.results() ?? null } satisfies SweepResponse); return; }
      if (segs.length === 0 || (segs.length === 1 && segs[0] === "index.html")) {
        const index = join(webDir, "index.html");
        if (!existsSync(index)) {
          sendBody(req, res, 200, Buffer.from("<!doctype html><title>abrupt</title><p>The dashboard is not built: run <code>npm run build</code>.</p>"), TYPES[".html"]!);
          return;
        }
        sendFile(req, res, index, false);
        return;
      }
      if (segs[0] === "assets" || (segs.length === 1 && /\.(ico|png|svg)$/.test(segs[0]!))) {
        const file = resolve(webDir, ...segs);
        if (!isInside(webDir, file)) throw new HttpError(400, "bad request path");
        if (!existsSync(file) || !statSync(file).isFile()) throw new HttpError(404, "not found");
        sendFile(req, res, file, true);
        return;
      }
      throw new HttpError(404, "not found");
    } catch (e) {
      if (res.headersSent) { res.end(); return; }
      const status = e instanceof HttpError || e instanceof PathError ? e.status : e instanceof AbruptError ? 400 : 500;
      if (status === 499) { res.destroy(); return; }
      sendJson(req, res, status, { error: (e as Error).message });
    }
  };

  const server = createServer((req, res) => { void handle(req, res); });
  await new Promise<void>((ok, fail) => {
    server.once("error", (e: NodeJS.ErrnoException) => {
      fail(e.code === "EADDRINUSE" ? new AbruptError(`port ${opts.port} on ${host} is already in use (try --port 0 for a free one)`)
        : e.code === "EACCES" ? new AbruptError(`no permission to listen on ${host}:${opts.port}`)
          : e.code === "EADDRNOTAVAIL" || e.code === "ENOTFOUND" ? new AbruptError(`cannot listen on host ${host}`) : e);
    });
    server.listen(opts.port ?? 8080, host, () => ok());
  });
  const addr = server.address();
  port = typeof addr === "object" && addr ? addr.port : opts.port ?? 8080;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/`;
  return {
    url,
    server,
    close: async () => {
      for (const w of watches.values()) w.stop();
      for (const r of sseClients) r.end();
      analyses.close();
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}
