/**
 * One writer per output folder (docs/limits-and-safety.md, "Locks"). A writer (trainer, preprocessing stage) holds
 * `<folder>/.ssl3d.lock` (or a named variant such as `.ssl3d.part-0-of-2.lock` for parts that may run side by side)
 * while it writes; a second writer on the same folder fails at once with an EnvironmentError naming the holder.
 *
 * The lock file is created complete (written to a temporary name, then hard-linked to the lock name, which fails if
 * it exists) and holds `{pid, start, host, owner, since}`. A lock is stale, and is taken over, when
 * - it was made on this host and its process no longer runs (pid gone, or the pid now belongs to a process started
 *   at another time: `/proc/<pid>/stat` start time), e.g. after `kill -9`; or
 * - it was made on another host (a pod that is gone) and has not been refreshed for `SSL3D_LOCK_STALE_SECONDS`
 *   (default 60): holders touch their lock every `staleSeconds / 4`.
 * Locks are re-entrant within a process (plan-and-preprocess runs fingerprint, plan and preprocess under one lock)
 * and released on exit (also on `process.exit`); a lock left by kill -9 is recovered by the next writer.
 */
import { randomBytes } from "node:crypto";
import { linkSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import * as path from "node:path";
import { ConfigError, EnvironmentError, fileSystemError } from "../errors.js";
import { mkdirpSync } from "./atomic.js";
import { envString, processEnv, type Env } from "../config/settings.js";

export const LOCK_FILE = ".ssl3d.lock";

export interface LockInfo {
  readonly pid: number;
  /** Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22); null where unavailable. */
  readonly start: number | null;
  readonly host: string;
  readonly owner: string;
  readonly since: string;
  readonly token: string;
}

export interface FolderLock {
  readonly file: string;
  release(): void;
}

export interface LockOptions {
  /** What holds the lock, for the message a second writer gets (e.g. `ssl3d train`). */
  readonly owner: string;
  /** Lock file name (default `.ssl3d.lock`). */
  readonly name?: string;
  /** Other lock files in the folder that also exclude this one while live (e.g. every part lock for a whole lock). */
  readonly conflictsWith?: (lockFileName: string) => boolean;
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/** Start time of a process (clock ticks since boot), or null when /proc is not available. */
export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function staleSeconds(env: Env = processEnv()): number {
  const v = envString("SSL3D_LOCK_STALE_SECONDS", env);
  if (v === undefined) return 60;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0)
    throw new ConfigError(`SSL3D_LOCK_STALE_SECONDS must be a positive number of seconds, got "${v}"`, {
      field: "SSL3D_LOCK_STALE_SECONDS",
    });
  return n;
}

/** The holder of a lock file if it is live, undefined if the file is missing or stale. */
export function liveHolder(file: string, env: Env = processEnv()): LockInfo | undefined {
  let info: LockInfo;
  let mtimeMs: number;
  try {
    info = JSON.parse(readFileSync(file, "utf8")) as LockInfo;
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    return undefined;
  }
  if (typeof info.pid !== "number" || typeof info.host !== "string") return undefined;
  if (info.host !== hostname()) return Date.now() - mtimeMs < staleSeconds(env) * 1000 ? info : undefined;
  if (!pidAlive(info.pid)) return undefined;
  const start = processStartTime(info.pid);
  if (info.start !== null && start !== null && start !== info.start) return undefined; // the pid was reused
  return info;
}

const held = new Map<string, { info: LockInfo; count: number; timer: NodeJS.Timeout }>();
let exitHook = false;

function releaseAllOnExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const [file, h] of held) removeIfOurs(file, h.info.token);
    held.clear();
  });
}

function removeIfOurs(file: string, token: string): void {
  try {
    const cur = JSON.parse(readFileSync(file, "utf8")) as Partial<LockInfo>;
    if (cur.token === token) unlinkSync(file);
  } catch {
    // already gone
  }
}

function busy(dir: string, file: string, h: LockInfo): EnvironmentError {
  const where = h.host === hostname() ? `pid ${h.pid}` : `pid ${h.pid} on host ${h.host}`;
  return new EnvironmentError(
    `folder is in use by ${h.owner} (${where}, since ${h.since}); wait for it to finish or stop it (lock file ${path.basename(file)})`,
    { file: dir },
  );
}

function tryCreate(file: string, info: LockInfo): boolean {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    writeFileSync(tmp, JSON.stringify(info) + "\n");
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw fileSystemError(err, file, "cannot create the lock file") ?? err;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Take the folder's lock (creating the folder), or fail with an EnvironmentError naming the live holder. */
export function lockFolder(dir: string, opts: LockOptions): FolderLock {
  const env = opts.env ?? processEnv();
  mkdirpSync(dir);
  const file = path.join(path.resolve(dir), opts.name ?? LOCK_FILE);
  const mine = held.get(file);
  if (mine !== undefined) {
    mine.count++;
    return {
      file,
      release: () => {
        release(file);
      },
    };
  }
  if (opts.conflictsWith !== undefined) {
    for (const n of readdirSync(dir)) {
      if (n === path.basename(file) || !opts.conflictsWith(n)) continue;
      const other = path.join(path.resolve(dir), n);
      if (held.has(other)) continue;
      const h = liveHolder(other, env);
      if (h !== undefined) throw busy(dir, other, h);
    }
  }
  const info: LockInfo = {
    pid: process.pid,
    start: processStartTime(process.pid),
    host: hostname(),
    owner: opts.owner,
    since: new Date().toISOString(),
    token: randomBytes(8).toString("hex"),
  };
  for (let attempt = 0; !tryCreate(file, info); attempt++) {
    const h = liveHolder(file, env);
    if (h !== undefined || attempt >= 3) throw busy(dir, file, h ?? info);
    rmSync(file, { force: true }); // stale: its holder is gone
  }
  const period = Math.max(1, (staleSeconds(env) * 1000) / 4);
  const timer = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(file, now, now);
    } catch {
      // the next writer will see an old lock; nothing to do here
    }
  }, period);
  timer.unref();
  held.set(file, { info, count: 1, timer });
  releaseAllOnExit();
  return {
    file,
    release: () => {
      release(file);
    },
  };
}

function release(file: string): void {
  const h = held.get(file);
  if (h === undefined) return;
  if (--h.count > 0) return;
  clearInterval(h.timer);
  held.delete(file);
  removeIfOurs(file, h.info.token);
}
