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
 * A pod's log followed live (`kubectl logs -f`, from the container's start) and kept whole in memory: waiters learn
 * of a line as soon as the kubelet has it (no polling), and the whole log survives the pod (a deleted attempt's pods
 * take their logs with them, so a `kubectl logs` afterwards says "unable to retrieve container logs").
 */
export class LogStream {
  private readonly lines: string[] = [];
  private readonly waiters = new Set<(line: string | undefined) => void>();
  private readonly proc;
  private done = false;
  /** The whole log once the stream has ended (the container ended, or the pod is gone). */
  readonly ended: Promise<string>;

  constructor(
    c: RealCluster,
    ns: string,
    readonly pod: string,
  ) {
    this.proc = spawn(c.kubectlBin, ["--kubeconfig", c.kubeconfig, "-n", ns, "logs", "-f", pod], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let buf = "";
    this.proc.stdout.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.lines.push(line);
        for (const w of [...this.waiters]) w(line);
      }
    });
    this.ended = new Promise((resolve) => {
      const end = (): void => {
        this.done = true;
        for (const w of [...this.waiters]) w(undefined);
        resolve(this.text());
      };
      this.proc.on("close", end);
      this.proc.on("error", end);
    });
  }

  /** The log so far. */
  text(): string {
    return this.lines.map((l) => `${l}\n`).join("");
  }

  /**
   * The first value `match` returns for a line (those already read included); undefined when the log ends or
   * `timeoutMs` passes first. An exception thrown by `match` rejects.
   */
  until<T>(match: (line: string) => T | undefined, timeoutMs: number): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const check = (line: string | undefined): boolean => {
        let v: T | undefined;
        try {
          v = line === undefined ? undefined : match(line);
        } catch (e) {
          this.waiters.delete(check);
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
          return true;
        }
        if (line !== undefined && v === undefined) return false;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve(v);
        return true;
      };
      for (const l of this.lines) if (check(l)) return;
      if (this.done) {
        resolve(undefined);
        return;
      }
      timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(undefined);
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  stop(): void {
    this.proc.kill("SIGKILL");
  }
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
