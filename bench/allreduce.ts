/**
 * `npm run bench:allreduce [-- --ranks 2 --reps 3]`: the ring all-reduce of runtime/src/distributed/process-group.ts
 * on gradient sets the size of ResEnc-L's and Primus-M's parameters (one flat float32 buffer each, as the training
 * loop sends them), beside raw TCP between the same processes in the same run: every rank sends 2(N−1)/N · bytes
 * (what the all-reduce moves per rank) to its ring successor in one write while receiving as much from its
 * predecessor, over one plain socket per ring edge opened the way the ring's are. Memory to memory (the goal's
 * baseline): the bytes are read into a destination of their size, as the all-gather reads them; discarding: into
 * one reused 1 MiB buffer that stays in cache (iperf's way, shown for comparison).
 * Reports the all-reduce's bus bandwidth (NCCL's definition: 2(N−1)/N · bytes / time), the raw throughputs, the
 * per-repetition ratios (median and range; goal >= 80 %), the ratio of CPU time, and what one all-reduce adds to a
 * training step (the collective plus the loop's copies of the gradients into and out of the flat buffer,
 * training/loop.ts). The ranks run on this machine over loopback (what `--nproc-per-node` does).
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
      s.close(() => {
        resolve(p);
      });
    });
  });
}

/**
 * A plain TCP link per ring edge, opened like the ring's (rank r+1 connects to rank r, data flows r -> r+1; ports:
 * base + rank). The receiver reads with `onread` (no allocation per read, as the ring reads).
 */
async function rawLinks(
  rank: number,
  world: number,
  base: number,
): Promise<{ next: net.Socket; prev: net.Socket; rx: RawReceiver }> {
  const server = net.createServer();
  const nextP = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(base + rank, "127.0.0.1", resolve));
  const rx = new RawReceiver();
  let prev: net.Socket | undefined;
  for (let i = 0; prev === undefined; i++) {
    prev = await new Promise<net.Socket | undefined>((resolve) => {
      const onread = {
        buffer: () => rx.next(),
        callback: (n: number) => {
          rx.got(n);
          return true;
        },
      };
      const s = net.connect({ port: base + ((rank - 1 + world) % world), host: "127.0.0.1", onread });
      s.once("connect", () => {
        resolve(s);
      });
      s.once("error", () => {
        setTimeout(() => {
          resolve(undefined);
        }, 50);
      });
    });
    if (i > 200) throw new Error("raw TCP: predecessor not listening");
  }
  const next = await nextP;
  server.close();
  for (const s of [next, prev]) s.setNoDelay(true);
  return { next, prev, rx };
}

/**
 * Receives a transfer either into a destination of its size (memory to memory: every byte lands where a receiver
 * needs it, as the ring's all-gather does) or into one reused 1 MiB buffer that stays in cache (bytes discarded, as
 * iperf does).
 */
class RawReceiver {
  private readonly reused = new Uint8Array(1 << 20);
  private into: Uint8Array | undefined;
  private want = 0;
  private have = 0;
  private done: (() => void) | undefined;
  next(): Uint8Array {
    const into = this.into;
    return into !== undefined && this.have < this.want
      ? into.subarray(into.length - (this.want - this.have))
      : this.reused;
  }
  expect(bytes: number, into: Uint8Array | undefined): Promise<void> {
    return new Promise((resolve) => {
      this.into = into;
      this.want += bytes;
      this.done = resolve;
      this.check();
    });
  }
  got(n: number): void {
    this.have += n;
    this.check();
  }
  private check(): void {
    if (this.done !== undefined && this.have >= this.want) {
      const d = this.done;
      this.done = undefined;
      d();
    }
  }
}

/** Send `out` (one write, from its own memory like the ring) to next while receiving as many bytes from prev; seconds. */
async function rawExchange(
  links: { next: net.Socket; rx: RawReceiver },
  out: Uint8Array,
  into: Uint8Array | undefined,
): Promise<number> {
  const t0 = performance.now();
  const recv = links.rx.expect(out.length, into);
  await new Promise<void>((resolve, reject) =>
    links.next.write(out, (e) => {
      if (e) reject(e);
      else resolve();
    }),
  );
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

interface Timed {
  wall: number;
  /** This process's CPU time (user + system), seconds. */
  cpu: number;
}

/** `f` between two barriers: wall time (the slowest rank's, as the barrier makes it) and this rank's CPU time. */
async function timed(pg: ProcessGroup, f: () => Promise<unknown>): Promise<Timed> {
  await pg.barrier();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  await f();
  const c = process.cpuUsage(c0);
  await pg.barrier();
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

const pct = (x: number): string => `${(100 * x).toFixed(0)} %`;
const spread = (a: number[]): string => `**${pct(median(a))}** (${pct(Math.min(...a))}–${pct(Math.max(...a))})`;

/** One gradient set: `reps` rounds of ring, raw memory-to-memory and raw discarding, in rotating order. */
async function measure(
  pg: ProcessGroup,
  links: Awaited<ReturnType<typeof rawLinks>>,
  label: string,
  params: number,
  reps: number,
): Promise<string> {
  const world = pg.worldSize;
  const n = params + 2; // + loss and stop flag, as the loop sends
  const bytes = n * 4;
  const perLink = 4 * Math.round(((2 * (world - 1)) / world) * n);
  const buf = new Float32Array(n).fill(pg.rank + 1);
  const rawOut = new Uint8Array(perLink).fill(1);
  const rawIn = new Uint8Array(perLink).fill(1);
  await pg.allReduceSum(buf.subarray(0, 1 << 20)); // warm-up
  const runs = [
    () => timed(pg, () => pg.allReduceSum(buf)),
    () => timed(pg, () => rawExchange(links, rawOut, rawIn)),
    () => timed(pg, () => rawExchange(links, rawOut, undefined)),
  ];
  const ring: Timed[] = [],
    mem: Timed[] = [],
    discard: Timed[] = [];
  for (let i = 0; i < reps; i++) {
    // back to back in rotating order, so a change in the machine's load hits every side of a ratio alike
    const got: Timed[] = [];
    for (let k = 0; k < runs.length; k++) got[(k + i) % runs.length] = await runs[(k + i) % runs.length]!();
    ring.push(got[0]!);
    mem.push(got[1]!);
    discard.push(got[2]!);
  }
  const gib = (t: number): string => `${(perLink / t / 2 ** 30).toFixed(2)} GiB/s`;
  const tAr = median(ring.map((t) => t.wall));
  const copies = packUnpack(buf, 1 / world);
  return (
    `| ${label} | ${(params / 1e6).toFixed(1)} M (${(bytes / 2 ** 20).toFixed(0)} MiB) | ${tAr.toFixed(2)} s | ${gib(tAr)} | ` +
    `${gib(median(mem.map((t) => t.wall)))} | ${spread(ring.map((t, i) => mem[i]!.wall / t.wall))} | ` +
    `${gib(median(discard.map((t) => t.wall)))} | ${spread(ring.map((t, i) => discard[i]!.wall / t.wall))} | ` +
    `${pct(median(ring.map((t, i) => mem[i]!.cpu / t.cpu)))} | ${(tAr + copies).toFixed(2)} s (${copies.toFixed(2)} s copies) |`
  );
}

async function rank(): Promise<void> {
  const pg: ProcessGroup = await initProcessGroup(distributedConfigFromEnv());
  const world = pg.worldSize;
  const reps = Number(arg("reps", "3"));
  const links = await rawLinks(pg.rank, world, Number(process.env.BENCH_RAW_PORT));
  const rows: string[] = [];
  for (const [label, params] of [
    ["ResEnc-L", countParams("resenc-l")],
    ["Primus-M", countParams("primus-m")],
  ] as const) {
    rows.push(await measure(pg, links, label, params, reps));
  }
  if (pg.rank === 0) {
    process.stdout.write(
      `ring all-reduce, ${world} ranks on this machine (loopback), ${reps} repetitions.\n` +
        `raw TCP = between the same processes in the same run, over one plain socket per ring edge (r -> r+1): every rank ` +
        `sends 2(N-1)/N × size (what the all-reduce moves per rank) in one write while receiving as much; "memory to memory" ` +
        `reads into a destination of that size (the goal's baseline), "discarding" into one reused 1 MiB buffer (iperf's way).\n` +
        `Ratios: median (range) over repetitions of raw time / all-reduce time; CPU: this rank's CPU time, raw memory-to-memory / all-reduce.\n\n` +
        "| gradient set | size | all-reduce | bus bandwidth | raw TCP memory to memory | bus / raw | raw TCP discarding | bus / discarding | CPU raw / all-reduce | added to a step |\n" +
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" +
        rows.join("\n") +
        "\n",
    );
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
