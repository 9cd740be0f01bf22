/**
 * Adversarial tier, "the metrics endpoint" (docs/limits-and-safety.md, "Metrics endpoint"): loopback unless
 * SSL3D_METRICS_ADDRESS says otherwise, only /metrics and /healthz (GET/HEAD), 400 idle or half-sent connections do
 * not starve a scrape, and a busy port is an EnvironmentError (exit code 2) naming the address.
 */
import assert from "node:assert/strict";
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { test } from "node:test";
import { ConfigError, EnvironmentError, exitCodeOf } from "../../runtime/src/errors.js";
import {
  METRICS_LIMITS,
  TrainingMetrics,
  metricsHost,
  serveMetrics,
} from "../../runtime/src/observability/training-metrics.js";

function get(port: number, path: string, method = "GET", timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (b: Buffer) => (body += b.toString()));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

async function openSockets(port: number, n: number, partial: boolean): Promise<Socket[]> {
  const out: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = connect(port, "127.0.0.1");
    s.on("error", () => undefined);
    await new Promise<void>((res) =>
      s
        .once("connect", () => {
          res();
        })
        .once("error", () => {
          res();
        })
        .once("close", () => {
          res();
        }),
    );
    if (partial) s.write("GET /metrics HTTP/1.1\r\nHost: x\r\n"); // never finishes its headers
    out.push(s);
  }
  return out;
}

test("binds to 127.0.0.1 by default; SSL3D_METRICS_ADDRESS chooses the interface and must be an IP address", async () => {
  assert.equal(metricsHost({}), "127.0.0.1");
  assert.equal(metricsHost({ SSL3D_METRICS_ADDRESS: "0.0.0.0" }), "0.0.0.0");
  assert.throws(
    () => metricsHost({ SSL3D_METRICS_ADDRESS: "0.0.0.0; rm -rf /" }),
    (e: unknown) => e instanceof ConfigError && /SSL3D_METRICS_ADDRESS/.test(e.message),
  );
  const saved = process.env.SSL3D_METRICS_ADDRESS;
  delete process.env.SSL3D_METRICS_ADDRESS;
  const s = await serveMetrics(new TrainingMetrics({ defaultMetrics: false }), 0);
  try {
    assert.equal(s.host, "127.0.0.1");
  } finally {
    await s.close();
    if (saved !== undefined) process.env.SSL3D_METRICS_ADDRESS = saved;
  }
});

test("answers only /metrics and /healthz, GET and HEAD", async () => {
  const m = new TrainingMetrics({ defaultMetrics: false });
  m.trainLoss.set(0.5);
  const s = await serveMetrics(m, 0, { host: "127.0.0.1" });
  try {
    const metrics = await get(s.port, "/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /pretrain_train_loss 0\.5/);
    assert.equal((await get(s.port, "/healthz")).status, 200);
    assert.equal((await get(s.port, "/metrics?x=1")).status, 200);
    for (const p of ["/", "/debug/pprof", "/../../etc/passwd", "/metrics/../x", "//metrics"])
      assert.equal((await get(s.port, p)).status, 404, p);
    for (const method of ["POST", "PUT", "DELETE"])
      assert.equal((await get(s.port, "/metrics", method)).status, 405, method);
  } finally {
    await s.close();
  }
});

for (const partial of [false, true]) {
  test(`400 ${partial ? "half-sent (slowloris)" : "idle"} connections do not starve a scrape`, async () => {
    const s = await serveMetrics(new TrainingMetrics({ defaultMetrics: false }), 0, { host: "127.0.0.1" });
    const sockets = await openSockets(s.port, 400, partial);
    try {
      for (let i = 0; i < 5; i++) {
        const r = await get(s.port, "/metrics", "GET", 5000);
        assert.equal(r.status, 200);
      }
      const open = sockets.filter((x) => !x.destroyed).length;
      assert.ok(
        open <= METRICS_LIMITS.maxConnections,
        `${open} of the 400 connections are still open (limit ${METRICS_LIMITS.maxConnections})`,
      );
    } finally {
      for (const x of sockets) x.destroy();
      await s.close();
    }
  });
}

test("idle connections are closed after the idle timeout", async () => {
  const s = await serveMetrics(new TrainingMetrics({ defaultMetrics: false }), 0, {
    host: "127.0.0.1",
    idleTimeoutMs: 200,
  });
  const [sock] = await openSockets(s.port, 1, false);
  try {
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => {
        rej(new Error("idle connection still open after 5 s"));
      }, 5000);
      sock!.once("close", () => {
        clearTimeout(t);
        res();
      });
    });
  } finally {
    sock!.destroy();
    await s.close();
  }
});

test("a busy port is an EnvironmentError (exit code 2) naming the address, not an internal error", async () => {
  const first = await serveMetrics(new TrainingMetrics({ defaultMetrics: false }), 0, { host: "127.0.0.1" });
  try {
    await assert.rejects(
      serveMetrics(new TrainingMetrics({ defaultMetrics: false }), first.port, { host: "127.0.0.1" }),
      (e: unknown) => {
        assert.ok(e instanceof EnvironmentError);
        assert.equal(exitCodeOf(e), 2);
        assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${first.port} is already in use`));
        assert.doesNotMatch(e.message, /\n/);
        return true;
      },
    );
  } finally {
    await first.close();
  }
});
