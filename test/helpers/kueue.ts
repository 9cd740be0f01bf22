/**
 * The real Kueue controller manager (sigs.k8s.io/kueue cmd/kueue, built by scripts/setup.d/38-kueue.sh) against the
 * API-server tier's kube-apiserver: Kueue's own CRDs, no webhook configurations (its webhook server listens on a free
 * port with a self-signed certificate, but the API server never calls it), no leader election, no internal certificate
 * management, only the batch/job integration, and the visibility server off.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { applyCrdYaml } from "../../operator/src/kube/crds.js";
import type { KubeClient } from "../../operator/src/kube/client.js";
import { freePort } from "./net.js";
import { cacheDir } from "./python.js";

export const KUEUE_VERSION = process.env.SSL3D_KUEUE_VERSION ?? "v0.17.0";
const METRICS_CERT = "/etc/kueue/metrics/certs/tls.crt";

/** Why the Kueue test cannot run here (SSL3D_TEST_KUEUE=0), else undefined; missing files are an error, not a skip. */
export function kueueSkipReason(): string | undefined {
  return process.env.SSL3D_TEST_KUEUE === "0"
    ? "SSL3D_TEST_KUEUE=0: Kueue's setup step (38-kueue.sh) was skipped"
    : undefined;
}

function paths(): { bin: string; crds: string; certs: string } {
  const root = join(cacheDir(), "kueue", KUEUE_VERSION);
  const p = {
    bin: join(cacheDir(), "bin", `kueue-${KUEUE_VERSION}`),
    crds: join(root, "crds"),
    certs: join(cacheDir(), "kueue", "certs"),
  };
  for (const f of [p.bin, join(p.crds, ".done"), join(p.certs, "tls.crt"), METRICS_CERT]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`bash scripts/setup.d/38-kueue.sh\``);
  }
  return p;
}

/** Applies Kueue's CRDs (config/components/crd/bases of the module, unchanged) and waits until they are served. */
export async function installKueueCrds(client: KubeClient): Promise<void> {
  const dir = paths().crds;
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
  const yaml = files.map((f) => readFileSync(join(dir, f), "utf8")).join("\n---\n");
  await applyCrdYaml(client, yaml, "ssl3d-tests", 60_000);
}

export interface KueueProcess {
  log: string;
  stop(): Promise<void>;
}

/** Starts the Kueue manager (as cluster admin, through `kubeconfigPath`) and waits for its readiness probe. */
export async function startKueue(kubeconfigPath: string, dir: string): Promise<KueueProcess> {
  const p = paths();
  const [health, metrics, webhook] = [await freePort(), await freePort(), await freePort()];
  const config = join(dir, "kueue-config.yaml");
  writeFileSync(
    config,
    [
      "apiVersion: config.kueue.x-k8s.io/v1beta2",
      "kind: Configuration",
      "namespace: kueue-system",
      `health: {healthProbeBindAddress: "127.0.0.1:${health}"}`,
      `metrics: {bindAddress: "127.0.0.1:${metrics}"}`,
      `webhook: {port: ${webhook}, host: 127.0.0.1, certDir: "${p.certs}"}`,
      "leaderElection: {leaderElect: false}",
      "internalCertManagement: {enable: false}",
      "manageJobsWithoutQueueName: false",
      "integrations: {frameworks: [batch/job]}",
      "",
    ].join("\n"),
  );
  const log = join(dir, "kueue.log");
  const fd = openSync(log, "a");
  const child: ChildProcess = spawn(
    p.bin,
    [`--config=${config}`, "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=info"],
    { stdio: ["ignore", fd, fd], env: { ...process.env, KUBECONFIG: kubeconfigPath } },
  );
  const kill = (): void => {
    child.kill("SIGKILL");
  };
  process.on("exit", kill);
  const exited = new Promise<void>((resolve) => {
    child.on("exit", () => {
      resolve();
    });
  });
  const until = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`kueue exited early (${child.exitCode ?? child.signalCode}); see ${log}`);
    const ok = await fetch(`http://127.0.0.1:${health}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > until) {
      kill();
      throw new Error(`kueue not ready after 90 s; see ${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    log,
    stop: async () => {
      process.off("exit", kill);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(kill, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
