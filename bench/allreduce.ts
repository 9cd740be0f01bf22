/**
 * `npm run bench:allreduce [-- --ranks 2 --reps 3]`: the ring all-reduce of runtime/src/distributed/process-group.ts
 * on gradient sets the size of ResEnc-L's and Primus-M's parameters (one flat float32 buffer each, as the training
 * loop sends them), beside raw TCP throughput between the same processes in the same run: every rank streams the
 * same number of bytes to its ring successor while receiving from its predecessor (the ring's traffic pattern) over
 * a plain socket. Reports the all-reduce's bus bandwidth (NCCL's definition: 2(N−1)/N · bytes / time), the raw TCP
 * link throughput, their ratio (goal >= 80 %), and what one ResEnc-L all-reduce adds to a training step (the
 * collective plus the loop's copies of the gradients into and out of the flat buffer, training/loop.ts).
 * The ranks run on this machine over loopback (what `--nproc-per-node` does); medians of `reps`.
 */
import * as net from "node:net";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { distributedConfigFromEnv } from "../runtime/src/distributed/env.js";
import { launchLocalRanks } from "../runtime/src/distributed/launch.js";
import { initProcessGroup, type ProcessGroup } from "../runtime/src/distributed/process-group.js";
import { countParams } from "../runtime/src/models/registry.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : dflt;
}
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function freePort(): Promise<number> {
  return await new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => { resolve(p); });
    });
  });
}

/** A plain TCP link to the ring successor and from the predecessor (ports: base + rank). */
async function rawLinks(rank: number, world: number, base: number): Promise<{ next: net.Socket; prev: net.Socket }> {
  const server = net.createServer();
  const prevP = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(base + rank, "127.0.0.1", resolve));
  let next: net.Socket | undefined;
  for (let i = 0; next === undefined; i++) {
    next = await new Promise<net.Socket | undefined>((resolve) => {
      const s = net.connect(base + ((rank + 1) % world), "127.0.0.1");
      s.once("connect", () => { resolve(s); });
      s.once("error", () => { setTimeout(() => { resolve(undefined); }, 50); });
    });
    if (i > 200) throw new Error("raw TCP: successor not listening");
  }
  const prev = await prevP;
  server.close();
  for (const s of [next, prev]) s.setNoDelay(true);
  return { next, prev };
}

/** Send `bytes` to next while receiving `bytes` from prev; seconds. */
async function rawExchange(links: { next: net.Socket; prev: net.Socket }, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(4 << 20, 1);
  const t0 = performance.now();
  const recv = new Promise<void>((resolve) => {
    let got = 0;
    const on = (b: Buffer): void => {
      got += b.length;
      if (got >= bytes) { links.prev.off("data", on); resolve(); }
    };
    links.prev.on("data", on);
  });
  let sent = 0;
  while (sent < bytes) {
    const n = Math.min(chunk.length, bytes - sent);
    if (!links.next.write(n === chunk.length ? chunk : chunk.subarray(0, n))) await new Promise((r) => links.next.once("drain", r));
    sent += n;
  }
  await recv;
  return (performance.now() - t0) / 1000;
}

/** The loop's copies: gradients into the flat buffer (scaled by 1/world) and back out (training/loop.ts). */
function packUnpack(buf: Float32Array, share: number): number {
  const grads = new Float32Array(buf.length);
  const t0 = performance.now();
  for (let k = 0; k < buf.length; k++) buf[k] = grads[k]! * share;
  grads.set(buf);
  return (performance.now() - t0) / 1000;
}

async function rank(): Promise<void> {
  const cfg = distributedConfigFromEnv();
  const pg: ProcessGroup = await initProcessGroup(cfg);
  const world = pg.worldSize;
  const reps = Number(arg("reps", "3"));
  const links = await rawLinks(pg.rank, world, Number(process.env.BENCH_RAW_PORT));
  const rows: string[] = [];
  const sets = [["ResEnc-L", countParams("resenc-l")], ["Primus-M", countParams("primus-m")]] as const;
  for (const [label, params] of sets) {
    const n = params + 2; // + loss and stop flag, as the loop sends
    const bytes = n * 4;
    const perLink = Math.round((2 * (world - 1) / world) * bytes);
    const buf = new Float32Array(n).fill(pg.rank + 1);
    const ar: number[] = [], raw: number[] = [];
    await pg.allReduceSum(buf.subarray(0, 1 << 20)); // warm-up
    for (let i = 0; i < reps; i++) {
      await pg.barrier();
      let t0 = performance.now();
      await pg.allReduceSum(buf);
      await pg.barrier();
      ar.push((performance.now() - t0) / 1000);
      t0 = performance.now();
      const tr = await rawExchange(links, perLink);
      await pg.barrier();
      raw.push(Math.max(tr, (performance.now() - t0) / 1000));
    }
    const tAr = median(ar), tRaw = median(raw);
    const bus = perLink / tAr / 2 ** 30, link = perLink / tRaw / 2 ** 30;
    const copies = packUnpack(buf, 1 / world);
    rows.push(`| ${label} | ${(params / 1e6).toFixed(1)} M (${(bytes / 2 ** 20).toFixed(0)} MiB) | ${tAr.toFixed(2)} s | ${bus.toFixed(2)} GiB/s | ${link.toFixed(2)} GiB/s | **${((100 * bus) / link).toFixed(0)} %** | ${(tAr + copies).toFixed(2)} s (${copies.toFixed(2)} s copies) |`);
  }
  if (pg.rank === 0) {
    process.stdout.write(`ring all-reduce, ${world} ranks on this machine (loopback), median of ${reps}\n\n` +
      "| gradient set | size | all-reduce | bus bandwidth | raw TCP, same processes | bus / raw | added to a step |\n" +
      "| --- | --- | --- | --- | --- | --- | --- |\n" + rows.join("\n") + "\n");
  }
  links.next.destroy();
  links.prev.destroy();
  await pg.close();
}

if (process.env.RANK !== undefined) {
  await rank();
} else {
  const ranks = Number(arg("ranks", "2"));
  const code = await launchLocalRanks({
    cfg: { nnodes: 1, nodeRank: 0, masterAddr: "127.0.0.1", masterPort: await freePort() },
    nprocPerNode: ranks,
    command: process.execPath,
    args: [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    env: { ...process.env, BENCH_RAW_PORT: String(20000 + Math.floor(Math.random() * 20000)), SSL3D_LOG_LEVEL: "warn" },
  });
  process.exitCode = code;
}
