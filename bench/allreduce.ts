/**
 * `npm run bench:allreduce [-- --ranks 2 --reps 7]`: the ring all-reduce of runtime/src/distributed/process-group.ts
 * on the gradient sets of ResEnc-L and Primus-M (their parameter tensors, from the models' declarations; the step
 * fuses them into one flat float32 buffer, distributed/data-parallel.ts, which is what the ring sees), beside raw
 * TCP between the same processes in the same run: every rank sends 2(N−1)/N · bytes
 * (what the all-reduce moves per rank) to its ring successor in one write while receiving as much from its
 * predecessor, over one plain socket per ring edge opened the way the ring's are. Memory to memory (the goal's
 * baseline): the bytes are read into a destination of their size, as the all-gather reads them; discarding: into
 * one reused 1 MiB buffer that stays in cache (iperf's way, shown for comparison).
 * Reports the all-reduce's bus bandwidth (NCCL's definition: 2(N−1)/N · bytes / time), the raw throughputs, the
 * per-repetition ratios (median and range; goal >= 80 %), the ratio of CPU time, and what one all-reduce adds to a
 * training step: `DataParallel.reduceStep` on tensors of the model's parameter shapes (cpu backend), i.e. the share
 * weighting into the fused buffer, the collective and the tensors over the result; it fails when a tensor is left.
 * The ranks run on this machine over loopback (what `--nproc-per-node` does). The output starts with the conditions
 * (cores, load average before and after, Node, whether the float32 kernels are native), since on a shared machine
 * only ratios within one run mean anything.
 */
import * as net from "node:net";
import { createServer } from "node:net";
import * as os from "node:os";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { dataParallel } from "../runtime/src/distributed/data-parallel.js";
import { distributedConfigFromEnv } from "../runtime/src/distributed/env.js";
import { launchLocalRanks } from "../runtime/src/distributed/launch.js";
import { initProcessGroup, type ProcessGroup } from "../runtime/src/distributed/process-group.js";
import { selectBackend } from "../runtime/src/models/backend/select.js";
import { nativeAddon } from "../runtime/src/models/backend/native/addon.js";
import { numel } from "../runtime/src/models/params.js";
import { declarePrimus, PRIMUS_PRESETS, resolvePrimus } from "../runtime/src/models/primus.js";
import { countParams } from "../runtime/src/models/registry.js";
import { declareResEnc, RESENC_L, resolveResEnc } from "../runtime/src/models/resenc-unet.js";

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

/** The parameter shapes of a preset (trained tensors only), from its declarations: nothing is allocated. */
function gradientShapes(key: "resenc-l" | "primus-m"): number[][] {
  const decls =
    key === "resenc-l"
      ? (() => {
          const r = resolveResEnc(RESENC_L, {});
          return declareResEnc(r.hyper, r.inChannels, r.outChannels, r.encoderOnly);
        })()
      : (() => {
          const p = PRIMUS_PRESETS.find((x) => x.key === key)!;
          return declarePrimus(resolvePrimus(p, {}), p.mae);
        })();
  const shapes = decls.filter((d) => d.buffer !== true).map((d) => [...d.shape]);
  const n = shapes.reduce((a, s) => a + numel(s), 0);
  if (n !== countParams(key))
    throw new Error(`${key}: declarations hold ${n} parameters, countParams ${countParams(key)}`);
  return shapes;
}

/** `group` with the wall time spent in allReduceSum added up in `spent`. */
function timingGroup(group: ProcessGroup): { group: ProcessGroup; spent: { s: number } } {
  const spent = { s: 0 };
  const timedGroup: ProcessGroup = {
    rank: group.rank,
    worldSize: group.worldSize,
    allReduceSum: async (buf) => {
      const t0 = performance.now();
      await group.allReduceSum(buf);
      spent.s += (performance.now() - t0) / 1000;
    },
    allReduceMean: (buf) => group.allReduceMean(buf),
    broadcast: (buf, root) => group.broadcast(buf, root),
    barrier: () => group.barrier(),
    close: () => group.close(),
  };
  return { group: timedGroup, spent };
}

/**
 * What one all-reduce adds to a training step: `reduceStep` on gradients of `shapes` (the loop's call, cpu backend),
 * `reps` times; per repetition its wall time (between barriers), the collective's part and this rank's CPU time
 * outside the collective. Throws when a repetition leaves a tensor behind.
 */
async function stepCost(pg: ProcessGroup, shapes: number[][], reps: number): Promise<{ wall: number; ring: number }[]> {
  const { group, spent } = timingGroup(pg);
  const dp = dataParallel(group, 1 / pg.worldSize);
  const named = new Map(shapes.map((s, i) => [`p${i}`, s] as const));
  const out: { wall: number; ring: number }[] = [];
  for (let i = 0; i < reps; i++) {
    const before = tf.memory().numTensors;
    const grads = new Map([...named].map(([n, s]) => [n, tf.fill(s, pg.rank + 1 + i)] as const));
    spent.s = 0;
    const t = await timed(pg, () =>
      dp.reduceStep(grads, 1, false, named).then((r) => {
        tf.dispose([...r.grads.values()]);
      }),
    );
    if (tf.memory().numTensors !== before)
      throw new Error(`reduceStep left ${tf.memory().numTensors - before} tensors behind`);
    out.push({ wall: t.wall, ring: spent.s });
  }
  return out;
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

interface Series {
  ring: Timed[];
  mem: Timed[];
  discard: Timed[];
}

/**
 * `reps` rounds of ring, raw memory-to-memory and raw discarding for every gradient set (sizes `n` floats, `perLink`
 * bytes per link). Within a round the three run back to back in rotating order, and the sets take turns in rotating
 * order too, so a change in the machine's load, or anything that favours whatever runs first (measured: with the
 * sets one after the other, the first one's ratio tended to come out lower), hits every side of a ratio alike.
 */
async function ringVsRaw(
  pg: ProcessGroup,
  links: Awaited<ReturnType<typeof rawLinks>>,
  sets: readonly { n: number; perLink: number }[],
  reps: number,
): Promise<Series[]> {
  const runsOf = sets.map(({ n, perLink }) => {
    const buf = new Float32Array(n).fill(pg.rank + 1);
    const rawOut = new Uint8Array(perLink).fill(1);
    const rawIn = new Uint8Array(perLink).fill(1);
    return [
      () => timed(pg, () => pg.allReduceSum(buf)),
      () => timed(pg, () => rawExchange(links, rawOut, rawIn)),
      () => timed(pg, () => rawExchange(links, rawOut, undefined)),
    ];
  });
  for (const runs of runsOf) for (const run of runs) await run(); // one untimed round of each at full size
  const out: Series[] = sets.map(() => ({ ring: [], mem: [], discard: [] }));
  for (let i = 0; i < reps; i++) {
    for (let j = 0; j < sets.length; j++) {
      const set = (i + j) % sets.length;
      const runs = runsOf[set]!;
      const got: Timed[] = [];
      for (let k = 0; k < runs.length; k++) got[(k + i) % runs.length] = await runs[(k + i) % runs.length]!();
      out[set]!.ring.push(got[0]!);
      out[set]!.mem.push(got[1]!);
      out[set]!.discard.push(got[2]!);
    }
  }
  return out;
}

/** One gradient set's table row: ring vs raw, and what `reduceStep` added to a step. */
function row(
  label: string,
  shapes: number[][],
  perLink: number,
  { ring, mem, discard }: Series,
  step: { wall: number; ring: number }[],
): string {
  const params = shapes.reduce((a, s) => a + numel(s), 0);
  const bytes = (params + 2) * 4;
  const gib = (t: number): string => `${(perLink / t / 2 ** 30).toFixed(2)} GiB/s`;
  const tAr = median(ring.map((t) => t.wall));
  const tStep = median(step.map((t) => t.wall));
  const tRest = median(step.map((t) => t.wall - t.ring));
  return (
    `| ${label} | ${shapes.length} | ${(params / 1e6).toFixed(1)} M (${(bytes / 2 ** 20).toFixed(0)} MiB) | ${tAr.toFixed(2)} s | ${gib(tAr)} | ` +
    `${gib(median(mem.map((t) => t.wall)))} | ${spread(ring.map((t, i) => mem[i]!.wall / t.wall))} | ` +
    `${gib(median(discard.map((t) => t.wall)))} | ${spread(ring.map((t, i) => discard[i]!.wall / t.wall))} | ` +
    `${pct(median(ring.map((t, i) => mem[i]!.cpu / t.cpu)))} | ${tStep.toFixed(2)} s (${tRest.toFixed(2)} s outside the collective) |`
  );
}

/** The run's conditions: on a shared machine they decide the absolute numbers. */
function conditions(world: number, reps: number, load: number[]): string {
  const cores = os.availableParallelism();
  return (
    `ring all-reduce, ${world} ranks on this machine (loopback), ${reps} repetitions; ${cores} cores, load average ` +
    `(1 min) ${load.map((l) => l.toFixed(1)).join(" before, ")} after (${os.cpus().length} CPUs listed); Node ` +
    `${process.version}; float32 add/scale: ${nativeAddon() !== null ? "native addon" : "JavaScript loops"}; ` +
    `step: cpu backend.\n` +
    `raw TCP = between the same processes in the same run, over one plain socket per ring edge (r -> r+1): every rank ` +
    `sends 2(N-1)/N × size (what the all-reduce moves per rank) in one write while receiving as much; "memory to memory" ` +
    `reads into a destination of that size (the goal's baseline), "discarding" into one reused 1 MiB buffer (iperf's way).\n` +
    `Ring and raw run back to back in rotating order each repetition. Ratios: median (range) over repetitions of raw ` +
    `time / all-reduce time; CPU: this rank's CPU time, raw memory-to-memory / all-reduce. Added to a step: median ` +
    `wall time of DataParallel.reduceStep on tensors of the model's parameter shapes (share weighting into the fused ` +
    `buffer, the all-reduce, tensors over the result), and the part of it outside the collective.\n\n`
  );
}

async function rank(): Promise<void> {
  await selectBackend("cpu");
  const load0 = os.loadavg()[0]!;
  const pg: ProcessGroup = await initProcessGroup(distributedConfigFromEnv());
  const world = pg.worldSize;
  const reps = Number(arg("reps", "7"));
  const links = await rawLinks(pg.rank, world, Number(process.env.BENCH_RAW_PORT));
  const sets = (
    [
      ["ResEnc-L", "resenc-l"],
      ["Primus-M", "primus-m"],
    ] as const
  ).map(([label, key]) => {
    const shapes = gradientShapes(key);
    const n = shapes.reduce((a, s) => a + numel(s), 0) + 2; // + loss and stop flag, as the step sends
    return { label, shapes, n, perLink: 4 * Math.round(((2 * (world - 1)) / world) * n) };
  });
  const series = await ringVsRaw(pg, links, sets, reps);
  const rows: string[] = [];
  for (const [i, set] of sets.entries())
    rows.push(row(set.label, set.shapes, set.perLink, series[i]!, await stepCost(pg, set.shapes, reps)));
  if (pg.rank === 0) {
    process.stdout.write(
      conditions(world, reps, [load0, os.loadavg()[0]!]) +
        "| gradient set | tensors | size | all-reduce | bus bandwidth | raw TCP memory to memory | bus / raw | raw TCP discarding | bus / discarding | CPU raw / all-reduce | added to a step |\n" +
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" +
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
