/**
 * A real Kubernetes API server for integration tests. Three modes, first match wins:
 * 1. `SSL3D_TEST_KUBECONFIG=<file>`: use that cluster as-is (never restarted or stopped by tests).
 * 2. A Docker engine (`DOCKER_HOST` or /var/run/docker.sock): testcontainers' K3s module.
 * 3. Otherwise: etcd (Debian's etcd-server) + kube-apiserver built by scripts/setup.d/30-kube-apiserver.sh, on
 *    loopback with random free ports, a temporary data dir, a service-account key pair, static-token auth (group
 *    system:masters), self-signed serving certs. Optionally kube-controller-manager running only the garbage
 *    collector (and, on request, the Job controller). The API server can be restarted mid-test (`restartApiServer`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cacheDir } from "./python.js";
export { freePort } from "./net.js";
import { freePort } from "./net.js";

export const KUBE_VERSION = process.env.SSL3D_KUBE_VERSION ?? "v1.34.2";

export interface TestCluster {
  readonly mode: "local" | "k3s" | "external";
  /** Path of a kubeconfig file for this cluster. */
  readonly kubeconfigPath: string;
  readonly kubeconfig: string;
  /** True when kube-controller-manager's garbage collector runs (ownerReferences are followed). */
  readonly garbageCollector: boolean;
  /** True when the real Job controller creates the Jobs' pods (local mode with `jobController`). */
  readonly jobController: boolean;
  readonly canRestart: boolean;
  /** Starts kube-controller-manager's garbage collector (local mode; call after installing CRDs). No-op elsewhere. */
  startGarbageCollector(): Promise<void>;
  restartApiServer(): Promise<void>;
  stop(): Promise<void>;
  /** Directory for logs and temporary files. */
  readonly dir: string;
}

export function kubeApiServerBin(): string {
  return join(cacheDir(), "bin", `kube-apiserver-${KUBE_VERSION}`);
}
export function kubeControllerManagerBin(): string {
  return join(cacheDir(), "bin", `kube-controller-manager-${KUBE_VERSION}`);
}

function dockerAvailable(): boolean {
  return process.env.DOCKER_HOST !== undefined || existsSync("/var/run/docker.sock");
}

export async function startTestCluster(
  opts: { garbageCollector?: boolean; jobController?: boolean } = {},
): Promise<TestCluster> {
  const external = process.env.SSL3D_TEST_KUBECONFIG;
  if (external !== undefined && external !== "") return externalCluster(external);
  if (dockerAvailable() && process.env.SSL3D_TEST_NO_DOCKER !== "1") return k3sCluster();
  return localCluster(opts.garbageCollector ?? false, opts.jobController ?? false);
}

function externalCluster(path: string): TestCluster {
  const text = readText(path);
  return {
    mode: "external",
    kubeconfigPath: path,
    kubeconfig: text,
    garbageCollector: true,
    jobController: false,
    canRestart: false,
    startGarbageCollector: () => Promise.resolve(),
    dir: mkdtempSync(join(tmpdir(), "ssl3d-kube-")),
    restartApiServer: () => Promise.reject(new Error("cannot restart the API server of an external cluster")),
    stop: () => Promise.resolve(),
  };
}

function readText(path: string): string {
  return readFileSync(path, "utf8");
}

async function k3sCluster(): Promise<TestCluster> {
  const { K3sContainer } = await import("@testcontainers/k3s");
  // The tests play the Job controller, so k3s runs without it (and without the scheduler, so no kubelet touches the
  // pods the tests create); the garbage collector stays on.
  const container = await new K3sContainer("rancher/k3s:v1.34.2-k3s1")
    .withCommand([
      "server",
      "--disable=traefik",
      "--disable-scheduler",
      "--kube-controller-manager-arg=controllers=*,-job,-ttl-after-finished,-cronjob",
    ])
    .start();
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-kube-"));
  const kubeconfig = container.getKubeConfig();
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, kubeconfig);
  return {
    mode: "k3s",
    kubeconfigPath,
    kubeconfig,
    garbageCollector: true,
    jobController: false,
    // A restarted container may get another host port, which would invalidate the kubeconfig the tests hold.
    canRestart: false,
    dir,
    startGarbageCollector: () => Promise.resolve(),
    restartApiServer: () => Promise.reject(new Error("restarting K3s is not supported by this harness")),
    stop: async () => {
      await container.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

function launch(bin: string, args: string[], logFile: string): Proc {
  const fd = openSync(logFile, "a");
  const child = spawn(bin, args, { stdio: ["ignore", fd, fd] });
  live.add(child);
  const exited = new Promise<void>((resolve) => {
    child.on("exit", () => {
      live.delete(child);
      resolve();
    });
  });
  return { child, exited };
}

async function terminate(p: Proc | undefined, graceMs = 5000): Promise<void> {
  if (p === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

function httpGet(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const fn = url.startsWith("https:") ? request : httpRequest;
    const req = fn(url, { method: "GET", headers, rejectUnauthorized: false, timeout: 3000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  proc?: Proc,
  logFile?: string,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc !== undefined && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Error(
        `${what} exited early (code ${proc.child.exitCode ?? proc.child.signalCode}); see ${logFile ?? "its log"}`,
      );
    }
    try {
      if (await check()) return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) throw new Error(`${what} not ready after ${timeoutMs} ms; see ${logFile ?? "its log"}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function localCluster(withGc: boolean, withJobs: boolean): Promise<TestCluster> {
  const apiserver = kubeApiServerBin();
  if (!existsSync(apiserver))
    throw new Error(
      `${apiserver} is missing: run \`bash scripts/setup.d/30-kube-apiserver.sh\` (or \`npm test\`, which runs the setup)`,
    );
  const etcdBin = existsSync("/usr/bin/etcd") ? "/usr/bin/etcd" : "etcd";
  const kcm = kubeControllerManagerBin();
  if (withJobs && !existsSync(kcm))
    throw new Error(`${kcm} is missing: run \`bash scripts/setup.d/30-kube-apiserver.sh\``);
  const gc = withJobs || (withGc && existsSync(kcm) && process.env.SSL3D_KUBE_CONTROLLER_MANAGER !== "0");
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-kube-"));
  const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];

  const etcdLog = join(dir, "etcd.log");
  const etcd = launch(
    etcdBin,
    [
      "--name=default",
      `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      "--logger=zap",
      "--log-level=error",
    ],
    etcdLog,
  );
  await waitFor(
    "etcd",
    async () => (await httpGet(`http://127.0.0.1:${etcdClient}/health`)).body.includes("true"),
    30_000,
    etcd,
    etcdLog,
  );

  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "sa.key"), privateKey.export({ type: "pkcs1", format: "pem" }));
  writeFileSync(join(dir, "sa.pub"), publicKey.export({ type: "spki", format: "pem" }));
  const token = randomBytes(24).toString("hex");
  writeFileSync(join(dir, "tokens.csv"), `${token},ssl3d-test-admin,ssl3d-test-admin,"system:masters"\n`);
  const server = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: test",
    "  cluster:",
    `    server: ${server}`,
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: admin",
    "  user:",
    `    token: ${token}`,
    "contexts:",
    "- name: test",
    "  context: {cluster: test, user: admin, namespace: default}",
    "current-context: test",
    "",
  ].join("\n");
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, kubeconfig);

  const apiArgs = [
    `--etcd-servers=http://127.0.0.1:${etcdClient}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--secure-port=${apiPort}`,
    `--cert-dir=${join(dir, "certs")}`,
    `--token-auth-file=${join(dir, "tokens.csv")}`,
    "--authorization-mode=RBAC",
    `--service-account-key-file=${join(dir, "sa.pub")}`,
    `--service-account-signing-key-file=${join(dir, "sa.key")}`,
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    "--service-cluster-ip-range=10.0.0.0/24",
    // No controller-manager creates ServiceAccounts here; the tests create Pods themselves.
    "--disable-admission-plugins=ServiceAccount",
    "--enable-priority-and-fairness=false",
    "--profiling=false",
    "--v=1",
  ];
  const apiLog = join(dir, "kube-apiserver.log");
  let api: Proc | undefined;
  const startApi = async (): Promise<void> => {
    api = launch(apiserver, apiArgs, apiLog);
    await waitFor(
      "kube-apiserver",
      async () => (await httpGet(`${server}/readyz`, { Authorization: `Bearer ${token}` })).status === 200,
      120_000,
      api,
      apiLog,
    );
  };
  try {
    await startApi();
  } catch (err) {
    await terminate(api);
    await terminate(etcd);
    throw err;
  }

  let cm: Proc | undefined;
  const startGc = async (): Promise<void> => {
    if (!gc || cm !== undefined) return;
    const cmLog = join(dir, "kube-controller-manager.log");
    cm = launch(
      kcm,
      [
        `--kubeconfig=${kubeconfigPath}`,
        `--controllers=${withJobs ? "garbagecollector,job" : "garbagecollector"}`,
        "--leader-elect=false",
        "--secure-port=0",
        "--concurrent-gc-syncs=2",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
      ],
      cmLog,
    );
    // The collector only follows ownerReferences after its resource monitors have synced.
    await waitFor(
      "garbage collector",
      () => Promise.resolve(readFileSync(cmLog, "utf8").includes("Proceeding to collect garbage")),
      60_000,
      cm,
      cmLog,
    );
  };

  return {
    mode: "local",
    kubeconfigPath,
    kubeconfig,
    garbageCollector: gc,
    jobController: withJobs,
    canRestart: true,
    dir,
    startGarbageCollector: startGc,
    restartApiServer: async () => {
      await terminate(api);
      await startApi();
    },
    stop: async () => {
      await terminate(cm);
      await terminate(api);
      await terminate(etcd);
      if (process.env.SSL3D_KEEP_TEST_CLUSTER !== "1") rmSync(dir, { recursive: true, force: true });
    },
  };
}
