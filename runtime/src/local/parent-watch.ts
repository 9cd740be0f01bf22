/**
 * A child of `ssl3d run` (local/runner.ts) stops when its runner is gone: the runner puts its pid into
 * `SSL3D_PARENT_PID`; once this process's parent is another process (the runner died, even by SIGKILL, and the child
 * was re-parented), it sends itself SIGTERM (the trainer checkpoints and exits; other stages end at once) and, if it
 * is still alive after the grace period, SIGKILL. Without the variable nothing is watched.
 */
import { envRaw, processEnv, type Env, type SettingName } from "../config/settings.js";
export const PARENT_PID_ENV = "SSL3D_PARENT_PID" satisfies SettingName;

export interface ParentWatchOptions {
  readonly intervalMs?: number;
  /** Time between SIGTERM and SIGKILL. */
  readonly graceMs?: number;
}

export function watchParent(env: Env = processEnv(), opts: ParentWatchOptions = {}): (() => void) | undefined {
  const v = envRaw(PARENT_PID_ENV, env);
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  const parent = Number(v);
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.stderr.write(`ssl3d: the parent process ${parent} (ssl3d run) is gone; stopping\n`);
    process.kill(process.pid, "SIGTERM");
    setTimeout(() => process.kill(process.pid, "SIGKILL"), opts.graceMs ?? 120_000).unref();
  }, opts.intervalMs ?? 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}
