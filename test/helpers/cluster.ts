/**
 * The real single-node cluster of scripts/cluster/ (`npm run cluster:up` / `cluster:down`) for the cluster tier
 * (test/cluster/), or a cluster of the user's own: with SSL3D_TEST_KUBECONFIG set, the tests use that kubeconfig
 * (and SSL3D_TEST_KUBECTL or `kubectl` from PATH) and neither start nor stop anything.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO } from "./chart.js";
import { run, runAsync, runOk, type RunResult } from "./tools.js";

export interface RealCluster {
  readonly kubeconfig: string;
  readonly kubectlBin: string;
  /** True when the test started the cluster (and must stop it); false for SSL3D_TEST_KUBECONFIG. */
  readonly local: boolean;
}

const UP = join(REPO, "scripts", "cluster", "up.sh");
const DOWN = join(REPO, "scripts", "cluster", "down.sh");
const STATE = join(REPO, "scripts", "cluster", "machine-state.sh");

/** `KUBECONFIG=` and `KUBECTL=`, the last two lines up.sh prints. */
export function parseUpOutput(stdout: string): { kubeconfig: string; kubectl: string } {
  const lines = stdout.trim().split("\n");
  const [a, b] = lines.slice(-2);
  if (a?.startsWith("KUBECONFIG=") !== true || b?.startsWith("KUBECTL=") !== true) {
    throw new Error(
      `scripts/cluster/up.sh: last two lines are not KUBECONFIG=... and KUBECTL=...:\n${lines.slice(-5).join("\n")}`,
    );
  }
  return { kubeconfig: a.slice("KUBECONFIG=".length), kubectl: b.slice("KUBECTL=".length) };
}

export function startRealCluster(onLog: (line: string) => void = () => {}): RealCluster {
  const own = process.env.SSL3D_TEST_KUBECONFIG;
  if (own !== undefined && own !== "") {
    return { kubeconfig: own, kubectlBin: process.env.SSL3D_TEST_KUBECTL ?? "kubectl", local: false };
  }
  const r = run("bash", [UP], { timeoutMs: 3_600_000 });
  logLines(r.stderr, onLog);
  if (r.status !== 0) throw new Error(`scripts/cluster/up.sh exited ${r.status}:\n${r.stderr.slice(-4000)}`);
  const { kubeconfig, kubectl } = parseUpOutput(r.stdout);
  return { kubeconfig, kubectlBin: kubectl, local: true };
}

export function stopRealCluster(c: RealCluster, onLog: (line: string) => void = () => {}): void {
  if (!c.local) return;
  const r = run("bash", [DOWN], { timeoutMs: 600_000 });
  logLines(r.stderr, onLog);
  if (r.status !== 0) throw new Error(`scripts/cluster/down.sh exited ${r.status}:\n${r.stderr.slice(-4000)}`);
}

/** The `[cluster] ...` progress lines of up.sh/down.sh (with their step times), one by one. */
function logLines(stderr: string, onLog: (line: string) => void): void {
  for (const l of stderr.split("\n")) if (l.startsWith("[cluster]")) onLog(l);
}

/** scripts/cluster/machine-state.sh: the network rules, links, routes, mounts, sysctls and cgroups of the machine. */
export function machineState(): string {
  return runOk("bash", [STATE], { timeoutMs: 120_000 });
}

export function kubectl(c: RealCluster, args: readonly string[], input?: string): RunResult {
  return run(c.kubectlBin, ["--kubeconfig", c.kubeconfig, ...args], { input, timeoutMs: 300_000 });
}

export function kubectlOk(c: RealCluster, args: readonly string[], input?: string): string {
  const r = kubectl(c, args, input);
  if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** kubectl without blocking the event loop (for polls that run beside other polls). */
export function kubectlAsync(c: RealCluster, args: readonly string[], input?: string): Promise<RunResult> {
  return runAsync(c.kubectlBin, ["--kubeconfig", c.kubeconfig, ...args], { input, timeoutMs: 300_000 });
}

export async function kubectlOkAsync(c: RealCluster, args: readonly string[], input?: string): Promise<string> {
  const r = await kubectlAsync(c, args, input);
  if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.status}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * Streams a pod's log (`kubectl logs -f`, from its start) and resolves with the first value `match` returns for a
 * line, or undefined when the log ends (the container ended) or `timeoutMs` passes first. An exception thrown by
 * `match` rejects. No polling: the caller learns of the line as soon as the kubelet has it.
 */
export function followLogs<T>(
  c: RealCluster,
  ns: string,
  pod: string,
  match: (line: string) => T | undefined,
  timeoutMs: number,
): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const p = spawn(c.kubectlBin, ["--kubeconfig", c.kubeconfig, "-n", ns, "logs", "-f", pod], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let buf = "";
    let settled = false;
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      p.kill("SIGKILL");
      f();
    };
    const timer = setTimeout(() => {
      settle(() => {
        resolve(undefined);
      });
    }, timeoutMs);
    p.stdout.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      for (let i = buf.indexOf("\n"); i >= 0 && !settled; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const v = match(line);
          if (v !== undefined)
            settle(() => {
              resolve(v);
            });
        } catch (e) {
          settle(() => {
            reject(e instanceof Error ? e : new Error(String(e)));
          });
        }
      }
    });
    p.on("error", (e) => {
      settle(() => {
        reject(e);
      });
    });
    p.on("close", () => {
      settle(() => {
        resolve(undefined);
      });
    });
  });
}

/** Lines of `a` missing from `b` and lines of `b` missing from `a` (as multisets), for a readable assertion. */
export function stateDiff(a: string, b: string): string[] {
  const count = (s: string): Map<string, number> => {
    const m = new Map<string, number>();
    for (const l of s.split("\n")) m.set(l, (m.get(l) ?? 0) + 1);
    return m;
  };
  const ca = count(a);
  const cb = count(b);
  const out: string[] = [];
  for (const [l, n] of ca) if ((cb.get(l) ?? 0) < n) out.push(`- ${l}`);
  for (const [l, n] of cb) if ((ca.get(l) ?? 0) < n) out.push(`+ ${l}`);
  return out;
}
