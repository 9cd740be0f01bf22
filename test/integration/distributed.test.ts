// Real processes joined over loopback TCP: ring all-reduce, broadcast and barrier give exact, identical results
// on every rank; a rank that dies makes the others fail fast with exit code 5 instead of hanging.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { freePort } from "../helpers/net.js";

const fixture = join(import.meta.dirname, "..", "fixtures", "dist-rank.ts");

interface RankResult {
  code: number | null;
  out: string;
  err: string;
}

function runRanks(world: number, port: number, extraEnv: Record<string, string> = {}): Promise<RankResult[]> {
  return Promise.all(
    Array.from(
      { length: world },
      (_, rank) =>
        new Promise<RankResult>((resolve) => {
          const child = spawn(process.execPath, ["--import", "tsx", fixture], {
            env: {
              ...process.env,
              RANK: String(rank),
              WORLD_SIZE: String(world),
              MASTER_ADDR: "127.0.0.1",
              MASTER_PORT: String(port),
              SSL3D_DIST_TIMEOUT_S: "60",
              DIST_LEN: "100003",
              ...extraEnv,
            },
          });
          let out = "";
          let err = "";
          child.stdout.on("data", (d: Buffer) => (out += d.toString()));
          child.stderr.on("data", (d: Buffer) => (err += d.toString()));
          child.on("exit", (code) => {
            resolve({ code, out, err });
          });
        }),
    ),
  );
}

test("three ranks all-reduce, broadcast and barrier with exact, identical results", { timeout: 120_000 }, async () => {
  const world = 3;
  const results = await runRanks(world, await freePort());
  const n = 100003;
  // Expected sum over ranks r of (r+1)*0.5 + (i%97)*(r+1) = 3 + (i%97)*6 (exact in float32 for these values).
  const expected = (i: number): number => 3 + (i % 97) * 6;
  const parsed = results.map((r) => {
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as { rank: number; first: number[]; last: number; checksum: number; b: number[] };
  });
  let checksum = 0;
  for (let i = 0; i < n; i++) checksum += expected(i);
  for (const p of parsed) {
    assert.deepEqual(p.first, [expected(0), expected(1), expected(2)]);
    assert.equal(p.last, expected(n - 1));
    assert.equal(p.checksum, checksum);
    assert.deepEqual(p.b, [42, 42, 42, 42, 42]);
  }
  assert.deepEqual(parsed.map((p) => p.rank).sort(), [0, 1, 2]);
});

test("a rank that dies makes every other rank fail with exit code 5, not hang", { timeout: 120_000 }, async () => {
  const t0 = Date.now();
  const results = await runRanks(3, await freePort(), { DIST_DIE_AFTER_JOIN: "1" });
  assert.equal(results[1]!.code, 17);
  for (const r of [results[0]!, results[2]!]) {
    assert.equal(r.code, 5, r.err);
    assert.match(r.err, /rank error: .*(closed|failed)/);
  }
  assert.ok(Date.now() - t0 < 55_000, "failure must propagate well before the 60 s timeout");
});

test(
  "the local launcher starts the ranks with the torchrun contract and fails as a whole",
  { timeout: 120_000 },
  async () => {
    const { launchLocalRanks } = await import("../../runtime/src/distributed/launch.js");
    const base = {
      cfg: { nnodes: 1, nodeRank: 0, masterAddr: "127.0.0.1", masterPort: await freePort() },
      nprocPerNode: 2,
      command: process.execPath,
      args: ["--import", "tsx", fixture],
    };
    const env = { ...process.env, DIST_LEN: "1000", SSL3D_DIST_TIMEOUT_S: "60" };
    assert.equal(await launchLocalRanks({ ...base, env }), 0);
    const failed = await launchLocalRanks({
      ...base,
      cfg: { ...base.cfg, masterPort: await freePort() },
      env: { ...env, DIST_DIE_AFTER_JOIN: "0" },
      graceMs: 2000,
    });
    assert.ok(failed === 17 || failed === 5, `launcher exit ${failed}`);
  },
);

/** A process on the network that knows the rendezvous port but not the run's secret: connects once, misbehaves. */
async function stranger(
  port: number,
  behaviour: "silent" | "forged-hello" | "huge-frame",
  stopAt: number,
): Promise<{ connected: boolean; closedByPeer: boolean }> {
  const net = await import("node:net");
  const frame = (tag: number, body: Buffer, len = BigInt(body.length)): Buffer => {
    const h = Buffer.alloc(12);
    h.writeUInt32BE(tag, 0);
    h.writeBigUInt64BE(len, 4);
    return Buffer.concat([h, body]);
  };
  while (Date.now() < stopAt) {
    const socket = await new Promise<import("node:net").Socket | undefined>((resolve) => {
      const s = net.connect({ host: "127.0.0.1", port });
      s.once("connect", () => {
        resolve(s);
      });
      s.once("error", () => {
        s.destroy();
        resolve(undefined);
      });
    });
    if (socket === undefined) {
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    socket.on("error", () => undefined);
    socket.resume(); // read (and discard) the challenge, so the peer's close is seen
    if (behaviour === "forged-hello")
      socket.write(
        frame(
          1,
          Buffer.from(
            JSON.stringify({
              rank: 1,
              worldSize: 3,
              ringPort: 1,
              run: "r",
              attempt: "1",
              nonce: "00",
              mac: "00".repeat(32),
            }),
          ),
        ),
      );
    if (behaviour === "huge-frame") socket.write(frame(1, Buffer.alloc(0), 1n << 40n));
    const closedByPeer = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        resolve(false);
      }, 20_000);
      socket.once("close", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    return { connected: true, closedByPeer };
  }
  return { connected: false, closedByPeer: false };
}

test(
  "strangers on the rendezvous port without the run's secret are refused and the run still finishes",
  { timeout: 120_000 },
  async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "ssl3d-secret-"));
    const secret = join(dir, "token");
    writeFileSync(secret, "a".repeat(64));
    const port = await freePort();
    const stopAt = Date.now() + 8_000;
    const strangers = Promise.all(
      (["silent", "forged-hello", "huge-frame"] as const).map((b) => stranger(port, b, stopAt)),
    );
    // the ranks start a little later, so the strangers are already connected when rank 0 accepts
    await new Promise((r) => setTimeout(r, 300));
    const results = await runRanks(3, port, { SSL3D_RUN_SECRET_FILE: secret, SSL3D_RUN: "r", SSL3D_ATTEMPT: "1" });
    for (const r of results) assert.equal(r.code, 0, r.err);
    const sums = results.map((r) => (JSON.parse(r.out) as { checksum: number }).checksum);
    assert.equal(new Set(sums).size, 1, "identical results on every rank");
    const seen = await strangers;
    assert.ok(
      seen.every((x) => x.connected && x.closedByPeer),
      `every stranger connected and was cut off: ${JSON.stringify(seen)}`,
    );
  },
);

test(
  "a rank with the wrong secret cannot join: the run fails (exit 5) instead of training with it",
  { timeout: 120_000 },
  async () => {
    const { mkdtempSync, writeFileSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "ssl3d-secret-"));
    writeFileSync(join(dir, "good"), "good-token");
    writeFileSync(join(dir, "bad"), "bad-token");
    const port = await freePort();
    const [r0, r1] = await Promise.all(
      [0, 1].map(
        (rank) =>
          new Promise<RankResult>((resolve) => {
            const child = spawn(process.execPath, ["--import", "tsx", fixture], {
              env: {
                ...process.env,
                RANK: String(rank),
                WORLD_SIZE: "2",
                MASTER_ADDR: "127.0.0.1",
                MASTER_PORT: String(port),
                SSL3D_DIST_TIMEOUT_S: "6",
                DIST_LEN: "11",
                SSL3D_RUN_SECRET_FILE: join(dir, rank === 0 ? "good" : "bad"),
              },
            });
            let out = "";
            let err = "";
            child.stdout.on("data", (d: Buffer) => (out += d.toString()));
            child.stderr.on("data", (d: Buffer) => (err += d.toString()));
            child.on("exit", (code) => {
              resolve({ code, out, err });
            });
          }),
      ),
    );
    assert.equal(r0!.code, 5, r0!.err);
    assert.equal(r1!.code, 5, r1!.err);
    assert.match(r0!.err, /timed out waiting for 1 more rank/);
  },
);
