// One writer per run folder: an exclusive lock file `DIR/train.lock`, taken
// before anything is written and held for the run's life.
//
// The file holds {pid, host, start} (start: the process's start time from
// /proc, so a reused pid is not mistaken for the owner). A lock is stale when
// its owner is gone: on the same host, when that process no longer exists; on
// another host (folders shared over NFS), when the owner has not touched the
// file for STALE_MS (the owner refreshes it every HEARTBEAT_MS). A stale lock
// is taken over under a second O_EXCL file, so two processes never take over
// the same stale lock at once.

import { closeSync, openSync, readFileSync, rmSync, statSync, utimesSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { AbruptError } from "../errors.js";
import { fsReason } from "./files.js";

export const LOCK_NAME = "train.lock";
const HEARTBEAT_MS = 10_000;
const STALE_MS = 120_000;

interface Owner { pid: number; host: string; start: string | null }

/** The start time of a process (field 22 of /proc/PID/stat), or null where /proc is missing. */
function startOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

function alive(o: Owner): boolean {
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const s = startOf(o.pid);
  return o.start === null || s === null || s === o.start;
}

function readOwner(file: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(file, "utf8")) as Owner;
    return typeof o.pid === "number" && typeof o.host === "string" ? o : null;
  } catch {
    return null; // being written, or garbage: judged by its age
  }
}

function isStale(file: string): boolean {
  let mtime: number;
  try {
    mtime = statSync(file).mtimeMs;
  } catch {
    return true; // gone
  }
  const o = readOwner(file);
  if (o && o.host === hostname()) return !alive(o);
  return Date.now() - mtime > STALE_MS;
}

function createExclusive(file: string, text: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, "wx");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new AbruptError(`cannot create ${file}: ${fsReason(e)}`);
  }
  try {
    writeSync(fd, text);
  } catch (e) {
    // e.g. a full disk: an empty lock file would block the folder until it is stale
    closeSync(fd);
    rmSync(file, { force: true });
    throw new AbruptError(`cannot create ${file}: ${fsReason(e)}`);
  }
  closeSync(fd);
  return true;
}

export interface RunLock {
  /** refreshes the lock's time (call often; it writes at most every few seconds) */
  beat(): void;
  release(): void;
}

/** Takes the run folder's lock or fails with one line naming the live owner. */
export function lockRun(dir: string): RunLock {
  const file = join(dir, LOCK_NAME);
  const me: Owner = { pid: process.pid, host: hostname(), start: startOf(process.pid) };
  const text = JSON.stringify(me) + "\n";
  if (!createExclusive(file, text)) {
    const takeover = `${file}.takeover`;
    if (existsOld(takeover)) rmSync(takeover, { force: true });
    if (!isStale(file) || !createExclusive(takeover, text)) {
      const o = readOwner(file);
      throw new AbruptError(`${dir} is in use by another trainer${o ? ` (pid ${o.pid} on ${o.host})` : ""}; wait for it to finish, or stop it first`);
    }
    try {
      if (!isStale(file)) throw new AbruptError(`${dir} is in use by another trainer`);
      rmSync(file, { force: true });
      if (!createExclusive(file, text)) throw new AbruptError(`${dir} is in use by another trainer`);
    } finally {
      rmSync(takeover, { force: true });
    }
  }
  let last = Date.now();
  let held = true;
  return {
    beat() {
      const now = Date.now();
      if (!held || now - last < HEARTBEAT_MS) return;
      last = now;
      try {
        utimesSync(file, now / 1000, now / 1000);
      } catch {
        /* the folder went away; the trainer will fail on its next write */
      }
    },
    release() {
      if (!held) return;
      held = false;
      const o = readOwner(file);
      if (o && o.pid === me.pid && o.host === me.host) rmSync(file, { force: true });
    },
  };
}

/** A takeover file left by a process killed mid-takeover (older than a few seconds). */
function existsOld(file: string): boolean {
  try {
    return Date.now() - statSync(file).mtimeMs > 5_000;
  } catch {
    return false;
  }
}

/** The live owner of a run folder's lock, or null (no lock, or a stale one). */
export function lockOwner(dir: string): Owner | null {
  const file = join(dir, LOCK_NAME);
  try {
    statSync(file);
  } catch {
    return null;
  }
  return isStale(file) ? null : readOwner(file);
}
