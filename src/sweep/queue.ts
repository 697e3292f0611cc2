// The distributed queue: BullMQ on Redis. `abrupt sweep --queue URL`
// enqueues a sweep's unfinished runs and follows them; `abrupt worker --queue
// URL` runs jobs on any machine that sees the sweep folder at the same path
// (NFS, say).
//
// - A job is one run: {dir, run}. Its id is the sweep's id and the run's
//   name, so enqueueing the same sweep twice adds nothing.
// - A worker killed mid-run stops renewing its job's lock; BullMQ moves the
//   job back to the queue after LOCK_MS and another worker resumes the run
//   from its last checkpoint (the orphaned trainer notices that its worker is
//   gone, checkpoints and exits).
// - No run is trained by two workers at once: BullMQ gives a job to one
//   worker, and the run folder's lock (src/store/lock.ts) refuses a second
//   trainer; a job that finds its run locked is retried later.
// - The follower reads progress from the run folders, as the local pool does.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Job, Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { AbruptError } from "../errors.js";
import { SweepDisplay, runDropped } from "./local.js";
import { currentStep, executeRun, runDirOf, runState } from "./runs.js";
import type { PlannedRun, SweepPlan } from "./spec.js";

export const QUEUE_NAME = "abrupt-runs";
const LOCK_MS = Number(process.env["ABRUPT_QUEUE_LOCK_MS"] ?? 10_000);

interface JobData { dir: string; run: string }

/** Parses a redis:// URL into connection options, or fails with one line. */
export function parseQueueUrl(url: string): { host: string; port: number; db: number; password?: string; username?: string; tls?: object } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new AbruptError(`--queue: "${url}" is not a URL (expected redis://HOST:PORT)`);
  }
  if (u.protocol !== "redis:" && u.protocol !== "rediss:") throw new AbruptError(`--queue: "${url}" is not a redis:// URL`);
  if (!u.hostname) throw new AbruptError(`--queue: "${url}" has no host`);
  const port = u.port ? Number(u.port) : 6379;
  const db = u.pathname && u.pathname !== "/" ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new AbruptError(`--queue: "${url}" names database "${u.pathname.slice(1)}", not a number`);
  return {
    host: u.hostname, port, db,
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

/** Fails with one line unless the Redis server at `url` answers within a few seconds. */
export async function checkQueue(url: string): Promise<void> {
  const opts = parseQueueUrl(url);
  const client = new Redis({ ...opts, lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  let cause: string | null = null; // the socket's own error (ECONNREFUSED, ENOTFOUND, …) says more than "Connection is closed"
  client.on("error", (e: Error) => { cause ??= e.message; });
  try {
    await client.connect();
    const pong = await client.ping();
    if (pong !== "PONG") throw new Error(`answered ${pong}`);
  } catch (e) {
    throw new AbruptError(`the queue at ${url} does not answer: ${cause ?? (e as Error).message}`);
  } finally {
    client.disconnect();
  }
}

const connectionOf = (url: string) => ({ ...parseQueueUrl(url), maxRetriesPerRequest: null });

/** Enqueues a sweep's unfinished runs; returns how many were added. */
export async function enqueueSweep(url: string, plan: SweepPlan, dir: string): Promise<number> {
  await checkQueue(url);
  const queue = new Queue<JobData>(QUEUE_NAME, { connection: connectionOf(url) });
  try {
    const jobs = plan.runs
      .filter((r) => runState(runDirOf(dir, r.name), r.config) !== "finished")
      .map((r) => ({
        name: r.name,
        data: { dir, run: r.name },
        opts: { jobId: `${plan.id}-${r.name}`, attempts: 20, backoff: { type: "fixed", delay: 2000 }, removeOnComplete: true, removeOnFail: true },
      }));
    if (jobs.length) await queue.addBulk(jobs);
    return jobs.length;
  } finally {
    await queue.close();
  }
}

/** Follows a queued sweep through its run folders until every run has finished (or no job is left). */
export async function followSweep(url: string, plan: SweepPlan, dir: string, quiet = false): Promise<{ finished: number; missing: string[]; interrupted: boolean }> {
  const queue = new Queue<JobData>(QUEUE_NAME, { connection: connectionOf(url) });
  const display = new SweepDisplay(plan.runs.length, quiet);
  let interrupted = false;
  const onSignal = () => { interrupted = true; };
  process.on("SIGINT", onSignal);
  try {
    for (;;) {
      let done = 0, running = 0, drops = 0;
      const unfinished: PlannedRun[] = [];
      for (const r of plan.runs) {
        const rd = runDirOf(dir, r.name);
        const s = runState(rd, r.config);
        if (s === "finished") {
          done++;
          if (runDropped(rd, r.config)) drops++;
        } else {
          unfinished.push(r);
          if (s === "running") running++;
        }
      }
      const counts = await queue.getJobCounts("waiting", "active", "delayed", "prioritized");
      const pending = (counts["waiting"] ?? 0) + (counts["active"] ?? 0) + (counts["delayed"] ?? 0) + (counts["prioritized"] ?? 0);
      display.update({ done, running, queued: unfinished.length - running, failed: 0, drops, eta: null });
      if (unfinished.length === 0 || interrupted) return { finished: done, missing: unfinished.map((r) => r.name), interrupted };
      if (pending === 0 && running === 0) {
        // give a job that is being retried a moment, then give up
        await new Promise((r) => setTimeout(r, 3000));
        const again = await queue.getJobCounts("waiting", "active", "delayed", "prioritized");
        if (Object.values(again).every((x) => x === 0) && plan.runs.every((r) => runState(runDirOf(dir, r.name)) !== "running")) {
          return { finished: done, missing: unfinished.map((r) => r.name), interrupted };
        }
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    display.stop();
    process.off("SIGINT", onSignal);
    await queue.close();
  }
}

/** The plan entry of a job (each run's resolved config is in DIR/plan/). */
function plannedRun(dir: string, name: string): PlannedRun {
  const config = JSON.parse(readFileSync(join(dir, "plan", `${name}.json`), "utf8")) as PlannedRun["config"];
  return { name, cell: name.replace(/_seed=\d+$/, ""), seed: config.train.seed, config };
}

/** A worker: runs queued jobs, `concurrency` at a time, until SIGINT/SIGTERM. */
export async function runWorker(url: string, concurrency: number, log: (line: string) => void = (l) => process.stderr.write(l + "\n")): Promise<void> {
  await checkQueue(url);
  const children = new Set<import("node:child_process").ChildProcess>();
  let stopping = false;
  const worker = new Worker<JobData>(
    QUEUE_NAME,
    async (job: Job<JobData>) => {
      const { dir, run } = job.data;
      const planned = plannedRun(dir, run);
      const exec = executeRun(dir, planned);
      children.add(exec.child);
      log(`worker ${process.pid}: ${run} from step ${currentStep(runDirOf(dir, run))}`);
      const res = await exec.done;
      children.delete(exec.child);
      if (res.code === 0 && runState(runDirOf(dir, run), planned.config) === "finished") {
        log(`worker ${process.pid}: ${run} finished at step ${currentStep(runDirOf(dir, run))}`);
        return { step: currentStep(runDirOf(dir, run)) };
      }
      const line = res.stderr.trim().split("\n").filter((l) => l.startsWith("abrupt:")).pop() ?? `trainer exited with ${res.code ?? res.signal}`;
      throw new Error(stopping ? `worker stopped (${line})` : line);
    },
    { connection: connectionOf(url), concurrency, lockDuration: LOCK_MS, stalledInterval: Math.max(1000, LOCK_MS / 2), maxStalledCount: 50 },
  );
  worker.on("failed", (job, err) => log(`worker ${process.pid}: ${job?.data.run ?? "?"} failed (attempt ${job?.attemptsMade ?? "?"}): ${err.message}`));
  worker.on("error", (err) => log(`worker ${process.pid}: ${err.message}`));
  log(`abrupt worker ${process.pid}: waiting for runs on ${url} (${concurrency} at a time; Ctrl-C stops)`);
  await new Promise<void>((done) => {
    const stop = () => {
      if (stopping) return;
      stopping = true;
      for (const c of children) c.kill("SIGINT"); // each trainer checkpoints and exits
      void worker.close().then(done);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}
