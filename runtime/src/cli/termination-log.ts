/** The Kubernetes termination message: `$SSL3D_TERMINATION_LOG`, else /dev/termination-log when present. */
import { existsSync, writeFileSync } from "node:fs";
import { envString, processEnv, type Env } from "../config/settings.js";

export function terminationLogPath(env: Env = processEnv()): string | undefined {
  return (
    envString("SSL3D_TERMINATION_LOG", env) ?? (existsSync("/dev/termination-log") ? "/dev/termination-log" : undefined)
  );
}

/** Write one line (at most 4096 bytes, the kubelet's limit); best effort. */
export function writeTerminationLog(line: string, env: Env = processEnv()): void {
  const target = terminationLogPath(env);
  if (target === undefined) return;
  try {
    writeFileSync(target, line.slice(0, 4000) + "\n");
  } catch {
    // best effort
  }
}
