// Files and folders the CLI writes. Every file goes through a temporary name
// (FILE.tmp-<pid>) and a rename, so a reader never sees half a file and a
// failed write leaves nothing behind; folders are made one level at a time
// with one-line errors; the temporary files of killed processes are removed
// on the next start of a run.

import { accessSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { AbruptError } from "../errors.js";

/** Why a file operation failed, in words. */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case "ENOSPC": return "no space left on the device";
    case "EDQUOT": return "disk quota exceeded";
    case "EROFS": return "read-only file system";
    case "EACCES":
    case "EPERM": return "permission denied";
    case "ENOTDIR": return "part of the path is a file, not a folder";
    case "EISDIR": return "it is a folder";
    case "ENOENT": return "no such file or folder";
    default: return err.code ? `${err.code} (${err.message})` : err.message;
  }
}

/**
 * Makes `dir` (and its missing parents) and checks that it can be written.
 * Each level is made on its own: Node's recursive mkdir loops forever on
 * file systems that refuse new folders (e.g. /proc/x).
 */
export function ensureDir(dir: string, what = "folder"): string {
  const abs = resolve(dir);
  const missing: string[] = [];
  let p = abs;
  while (!existsSync(p)) {
    missing.unshift(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  if (existsSync(p) && !statSync(p).isDirectory()) {
    throw new AbruptError(`cannot use ${what} ${dir}: ${p === abs ? "it is a file, not a folder" : `${p} is a file, not a folder`}`);
  }
  for (const d of missing) {
    try {
      mkdirSync(d);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST" && statSync(d).isDirectory()) continue;
      const why = code === "ENOENT" ? `the file system does not allow new folders in ${dirname(d)}` : fsReason(e);
      throw new AbruptError(`cannot create ${what} ${dir}: ${why}`);
    }
  }
  try {
    accessSync(abs, constants.W_OK);
  } catch (e) {
    throw new AbruptError(`cannot write to ${what} ${dir}: ${fsReason(e)}`);
  }
  return abs;
}

/**
 * Writes a file through FILE.tmp-<pid> and a rename; on failure the temporary
 * file is removed and the old file (if any) is left as it was. `data` may be
 * a list of chunks, written one after the other (never joined in memory);
 * `sync` flushes the file to the disk before the rename (checkpoints).
 */
export function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[], opts: { sync?: boolean } = {}): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const chunks = typeof data === "string" ? [Buffer.from(data, "utf8")] : data instanceof Uint8Array ? [data] : data;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w");
    for (const c of chunks) {
      for (let done = 0; done < c.byteLength;) done += writeSync(fd, c, done, c.byteLength - done);
    }
    if (opts.sync) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (e) {
    try {
      if (fd !== undefined) closeSync(fd);
      rmSync(tmp, { force: true });
    } catch {
      /* a read-only folder: nothing was written either */
    }
    throw new AbruptError(`cannot write ${file}: ${fsReason(e)}`);
  }
}

export function writeJsonAtomic(file: string, obj: unknown): void {
  writeFileAtomic(file, JSON.stringify(obj, null, 2) + "\n");
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the `*.tmp-<pid>` files in `dir` and its sub-folders `subdirs`
 * whose writer is dead (a process killed mid-write); returns their paths.
 */
export function removeStaleTemps(dir: string, subdirs: string[] = []): string[] {
  const removed: string[] = [];
  for (const d of [dir, ...subdirs.map((s) => join(dir, s))]) {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = /\.tmp-(\d+)$/.exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || pidAlive(pid)) continue;
      try {
        rmSync(join(d, name), { force: true });
        removed.push(join(d, name));
      } catch {
        /* not ours to remove (permissions): left as it is */
      }
    }
  }
  return removed;
}

/** Checks, before any work is done, that `file` can be written: its folder exists and takes files, and it is not a folder. */
export function checkWritableFile(file: string, what = "output file"): void {
  const abs = resolve(file);
  const dir = dirname(abs);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AbruptError(`cannot write ${what} ${file}: its folder does not exist (${dir})`);
  if (existsSync(abs) && statSync(abs).isDirectory()) throw new AbruptError(`cannot write ${what} ${file}: it is a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new AbruptError(`cannot write ${what} ${file}: ${fsReason(e)}`);
  }
}
