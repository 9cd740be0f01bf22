/**
 * Data-parallel process group over plain TCP: rendezvous at the master address, then a ring of connections
 * (rank r sends to r+1 and receives from r-1) for bandwidth-optimal collectives. This is what NCCL/Gloo give
 * PyTorch's DDP; nnssl itself only runs single-node `mp.spawn` (`src/nnssl/run/run_training.py`), ssl3d runs across
 * nodes.
 *
 * - `allReduceSum` is a ring reduce-scatter followed by a ring all-gather: each rank sends and receives
 *   2 (N-1)/N of the buffer, independent of N. For a fixed world size the summation order of every element is
 *   fixed, so results are bit-for-bit reproducible run to run, and identical on every rank.
 * - `broadcast` forwards the buffer around the ring in pipelined pieces.
 * - Any socket error, a closed peer or a timeout rejects the collective with a DistributedError (exit code 5), so
 *   a dead rank brings the whole gang down and the operator restarts it from the latest checkpoint.
 *
 * Rendezvous: rank 0 listens on MASTER_ADDR:MASTER_PORT; every rank opens an ephemeral ring port and announces it
 * (with its run/attempt identity) to rank 0, which checks the ranks and replies with the table of ring endpoints
 * (addresses as rank 0 observed them). Rank r+1 then connects to rank r's ring port and both prove they know the run's
 * secret; data flows over that connection from r to r+1, read straight into the collective's buffer (channel.ts).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { bytesOf, Channel, connectChannel, Tag } from "./channel.js";
import { log } from "../observability/log.js";
import { DistributedError } from "../errors.js";
import type { DistributedConfig } from "./env.js";
import { envString, processEnv, type Env } from "../config/settings.js";

export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** Element-wise sum over all ranks, in place. */
  allReduceSum(buf: Float32Array): Promise<void>;
  /** Element-wise mean over all ranks, in place. */
  allReduceMean(buf: Float32Array): Promise<void>;
  /** Overwrite `buf` on every rank with root's values. */
  broadcast(buf: Float32Array, root?: number): Promise<void>;
  barrier(): Promise<void>;
  close(): Promise<void>;
}

/** The group of a single process: every collective is the identity. */
export class SingleProcessGroup implements ProcessGroup {
  readonly rank = 0;
  readonly worldSize = 1;
  allReduceSum(_buf: Float32Array): Promise<void> {
    return Promise.resolve();
  }
  allReduceMean(_buf: Float32Array): Promise<void> {
    return Promise.resolve();
  }
  broadcast(_buf: Float32Array, _root = 0): Promise<void> {
    return Promise.resolve();
  }
  barrier(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Start offsets of `parts` nearly equal contiguous ranges of `n` elements (length parts + 1). */
export function splitRanges(n: number, parts: number): number[] {
  const base = Math.floor(n / parts);
  const extra = n % parts;
  const offs = [0];
  for (let i = 0; i < parts; i++) offs.push(offs[i]! + base + (i < extra ? 1 : 0));
  return offs;
}

export interface Identity {
  readonly run: string;
  readonly attempt: string;
  /** The run's shared secret (the per-run Secret's token); empty = no authentication (a local, loopback-only run). */
  readonly token?: string;
}

/** The run's secret from `$SSL3D_RUN_SECRET_FILE` (mounted from the per-run Secret), or "" when not configured. */
export function runSecretFromEnv(env: Env = processEnv()): string {
  const file = envString("SSL3D_RUN_SECRET_FILE", env);
  if (file === undefined) return "";
  try {
    const token = readFileSync(file, "utf8").trim();
    if (token === "") throw new Error("empty");
    return token;
  } catch (e) {
    throw new DistributedError(
      `cannot read the run's rendezvous secret: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      { file, field: "SSL3D_RUN_SECRET_FILE" },
    );
  }
}

/** HMAC-SHA256 of a challenge and a message under the run's secret (hex). */
function mac(token: string, nonce: string, what: string): string {
  return createHmac("sha256", token).update(`${nonce}\n${what}`).digest("hex");
}

function macOk(token: string, nonce: string, what: string, got: unknown): boolean {
  if (typeof got !== "string") return false;
  const want = Buffer.from(mac(token, nonce, what), "hex");
  const have = Buffer.from(got, "hex");
  return have.length === want.length && timingSafeEqual(have, want);
}

/** Time a connecting process has to answer the challenge; a silent stranger is dropped after it. */
const HANDSHAKE_MS = 10_000;
const HANDSHAKE_FRAME = 64 * 1024;

interface HelloMsg {
  rank: number;
  worldSize: number;
  ringPort: number;
  run: string;
  attempt: string;
  /** The joiner's challenge for rank 0 (rank 0 proves it knows the secret when it sends the table). */
  nonce: string;
  /** HMAC of rank 0's challenge and the fields above. */
  mac: string;
}

function helloText(h: Omit<HelloMsg, "mac">): string {
  return JSON.stringify([h.rank, h.worldSize, h.ringPort, h.run, h.attempt, h.nonce]);
}

/** Elements per pipelined broadcast piece (4 MiB). */
const BROADCAST_PIECE = 1 << 20;
/** Elements per all-reduce segment (4 MiB): one Data frame; a step forwards each as soon as it has landed. */
const SEGMENT = 1 << 20;

/** `a` in SEGMENT-sized pieces (at least one, possibly empty). */
function segments(a: Float32Array): Float32Array[] {
  const out = [a.subarray(0, SEGMENT)];
  for (let o = SEGMENT; o < a.length; o += SEGMENT) out.push(a.subarray(o, o + SEGMENT));
  return out;
}

/** `p`, marked handled, so a rejection that is awaited later (or superseded) is not reported as unhandled. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

class RingProcessGroup implements ProcessGroup {
  constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly next: Channel,
    private readonly prev: Channel,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Reduce-scatter then all-gather, 2 (N-1) steps; step k sends chunk `out` to the next rank and receives chunk `into`
   * from the previous one (added in the reduce-scatter). Step k+1 sends what step k received, so it is sent segment
   * by segment as soon as each segment has landed: the steps overlap instead of draining the ring between them.
   * Every receive is posted up front, so the incoming stream never waits for this rank to ask for it.
   */
  async allReduceSum(buf: Float32Array): Promise<void> {
    const n = this.worldSize;
    const offs = splitRanges(buf.length, n);
    const chunk = (i: number): Float32Array => {
      const c = ((i % n) + n) % n;
      return buf.subarray(offs[c], offs[c + 1]);
    };
    const r = this.rank;
    const steps: { out: Float32Array; into: Float32Array; reduce: boolean }[] = [];
    // Reduce-scatter: after n-1 steps rank r holds the full sum of chunk r+1. All-gather: circulate the sums.
    for (let s = 0; s < n - 1; s++) steps.push({ out: chunk(r - s), into: chunk(r - s - 1), reduce: true });
    for (let s = 0; s < n - 1; s++) steps.push({ out: chunk(r - s + 1), into: chunk(r - s), reduce: false });
    const received = steps.map((st) =>
      segments(st.into).map((seg) => handled(this.prev.recvInto(seg, st.reduce, this.timeoutMs))),
    );
    const sent: Promise<void>[] = [];
    steps.forEach((st, k) => {
      segments(st.out).forEach((seg, j) => {
        const ready = k === 0 ? Promise.resolve() : received[k - 1]![j]!;
        sent.push(handled(ready.then(() => this.next.send(Tag.Data, bytesOf(seg)))));
      });
    });
    await Promise.all([...received.flat(), ...sent]);
  }

  async allReduceMean(buf: Float32Array): Promise<void> {
    await this.allReduceSum(buf);
    const inv = 1 / this.worldSize;
    for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! * inv;
  }

  async broadcast(buf: Float32Array, root = 0): Promise<void> {
    const n = this.worldSize;
    const last = (root - 1 + n) % n; // the rank that does not forward
    const parts: Float32Array[] = [];
    let off = 0;
    do {
      parts.push(buf.subarray(off, Math.min(buf.length, off + BROADCAST_PIECE)));
      off += BROADCAST_PIECE;
    } while (off < buf.length);
    // Every piece's receive is posted at once, so the stream never waits for us; each is forwarded as it lands.
    const received = this.rank === root ? [] : parts.map((p) => handled(this.prev.recvInto(p, false, this.timeoutMs)));
    const sends: Promise<void>[] = [];
    for (let i = 0; i < parts.length; i++) {
      if (this.rank !== root) await received[i];
      if (this.rank !== last) sends.push(handled(this.next.send(Tag.Data, bytesOf(parts[i]!))));
    }
    await Promise.all(sends);
  }

  async barrier(): Promise<void> {
    await this.allReduceSum(new Float32Array(this.worldSize));
  }

  close(): Promise<void> {
    this.next.close();
    this.prev.close();
    return Promise.resolve();
  }
}

function listen(server: net.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => {
      reject(new DistributedError(`cannot listen on ${host}:${port}: ${e.code ?? e.message}`));
    });
    server.listen(port, host, () => {
      const addr = server.address();
      resolve(typeof addr === "object" && addr !== null ? addr.port : port);
    });
  });
}

/** Connect a channel to `host:port`, retrying until `deadline` (the peer may not listen yet). */
async function connectWithRetry(host: string, port: number, deadline: number, what: string): Promise<Channel> {
  let delay = 100;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      return await connectChannel(host, port, what);
    } catch (e) {
      lastError = (e as Error).message;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(2000, delay * 2);
    }
  }
  throw new DistributedError(`could not reach ${what} at ${host}:${port} (${lastError})`);
}

/** Queues every incoming connection of a server from creation on, so none is lost between two awaits. */
class Acceptor {
  private readonly queue: net.Socket[] = [];
  private waiter: ((s: net.Socket) => void) | undefined;

  constructor(server: net.Server) {
    server.on("connection", (s: net.Socket) => {
      const w = this.waiter;
      this.waiter = undefined;
      if (w !== undefined) w(s);
      else this.queue.push(s);
    });
  }

  next(deadline: number, what: string): Promise<net.Socket> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.waiter = undefined;
          reject(new DistributedError(`timed out waiting for ${what} to connect`));
        },
        Math.max(0, deadline - Date.now()),
      );
      timer.unref();
      this.waiter = (s) => {
        clearTimeout(timer);
        resolve(s);
      };
    });
  }
}

function normaliseAddress(a: string | undefined): string {
  if (a === undefined) return "127.0.0.1";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

function isHello(v: unknown): v is HelloMsg {
  const o = v as Partial<HelloMsg> | null;
  return (
    typeof o === "object" &&
    o !== null &&
    typeof o.rank === "number" &&
    typeof o.worldSize === "number" &&
    typeof o.ringPort === "number" &&
    typeof o.run === "string" &&
    typeof o.attempt === "string" &&
    typeof o.nonce === "string"
  );
}

type Table = { host: string | null; port: number }[];

function newNonce(): string {
  return randomBytes(16).toString("hex");
}

/**
 * Rank 0's side of one joining connection: challenge, authenticated hello. Resolves to the joiner or to undefined
 * for a stranger (wrong or missing secret, a straggler of another run or attempt, silence), which is dropped
 * without disturbing the rendezvous.
 */
async function admitJoiner(
  s: net.Socket,
  identity: Identity,
  worldSize: number,
): Promise<{ ch: Channel; hello: HelloMsg; host: string } | undefined> {
  const host = normaliseAddress(s.remoteAddress);
  const ch = Channel.over(s, `a joining rank (${host})`);
  ch.maxFrame = HANDSHAKE_FRAME;
  try {
    const nonce = newNonce();
    await ch.sendJson(Tag.Challenge, { nonce });
    const hello = await ch.recvJson(Tag.Hello, HANDSHAKE_MS);
    if (!isHello(hello) || !macOk(identity.token ?? "", nonce, helloText(hello), hello.mac)) {
      log().warn(
        { peer: host },
        "Refused a connection to the rendezvous port: it did not prove it knows the run's secret",
      );
      ch.close();
      return undefined;
    }
    if (hello.run !== identity.run || hello.attempt !== identity.attempt) {
      ch.close(); // a straggler of another run or attempt: ignore it
      return undefined;
    }
    if (hello.worldSize !== worldSize) {
      throw new DistributedError(
        `rank ${hello.rank} believes the world size is ${hello.worldSize}, rank 0 believes ${worldSize}`,
      );
    }
    ch.maxFrame = Number.POSITIVE_INFINITY;
    return { ch, hello, host };
  } catch (e) {
    if (e instanceof DistributedError && /world size/.test(e.message)) throw e;
    log().warn(
      { peer: host, err: (e as Error).message },
      "Dropped a connection to the rendezvous port during the handshake",
    );
    ch.close();
    return undefined;
  }
}

/** Rank 0: admit authenticated ranks 1..N-1 (every connection is handled on its own; strangers are dropped), send the table. */
async function rendezvousAsRank0(
  cfg: { masterPort: number },
  worldSize: number,
  ringPort: number,
  identity: Identity,
  deadline: number,
): Promise<Table> {
  const control = net.createServer();
  const peers = new Map<number, { ch: Channel; host: string; port: number; nonce: string }>();
  const accepted = new Set<net.Socket>();
  const complete = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => {
        reject(new DistributedError(`timed out waiting for ${worldSize - 1 - peers.size} more rank(s) to connect`));
      },
      Math.max(0, deadline - Date.now()),
    );
    timer.unref();
    control.on("connection", (s: net.Socket) => {
      if (peers.size >= worldSize - 1) {
        s.destroy();
        return;
      }
      accepted.add(s);
      admitJoiner(s, identity, worldSize).then(
        (j) => {
          if (j === undefined) return;
          const r = j.hello.rank;
          if (r <= 0 || r >= worldSize || peers.has(r)) {
            j.ch.close();
            clearTimeout(timer);
            reject(new DistributedError(`rank ${r} joined twice or is out of range 1..${worldSize - 1}`));
            return;
          }
          peers.set(r, { ch: j.ch, host: j.host, port: j.hello.ringPort, nonce: j.hello.nonce });
          if (peers.size === worldSize - 1) {
            clearTimeout(timer);
            resolve();
          }
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  });
  complete.catch(() => undefined);
  try {
    await listen(control, cfg.masterPort, "0.0.0.0");
    await complete;
    const table: Table = [{ host: null, port: ringPort }];
    for (let r = 1; r < worldSize; r++) {
      const p = peers.get(r)!;
      table.push({ host: p.host, port: p.port });
    }
    const text = JSON.stringify(table);
    await Promise.all(
      [...peers.values()].map((p) =>
        p.ch.sendJson(Tag.Table, { table, mac: mac(identity.token ?? "", p.nonce, text) }),
      ),
    );
    return table;
  } finally {
    for (const p of peers.values()) p.ch.close();
    for (const s of accepted) s.destroy(); // handshakes still pending (a silent stranger) end with the rendezvous
    control.close();
  }
}

/** Ranks 1..N-1: answer rank 0's challenge, check that the table comes from someone who knows the secret. */
async function rendezvousAsJoiner(
  cfg: { masterAddr: string; masterPort: number; timeoutMs: number },
  rank: number,
  worldSize: number,
  ringPort: number,
  identity: Identity,
  deadline: number,
): Promise<Table> {
  const ch = await connectWithRetry(cfg.masterAddr, cfg.masterPort, deadline, "rank 0");
  try {
    const challenge = (await ch.recvJson(Tag.Challenge, cfg.timeoutMs)) as { nonce?: unknown };
    if (typeof challenge.nonce !== "string") throw new DistributedError("protocol error: rank 0 sent no challenge");
    const base = { rank, worldSize, ringPort, run: identity.run, attempt: identity.attempt, nonce: newNonce() };
    await ch.sendJson(Tag.Hello, {
      ...base,
      mac: mac(identity.token ?? "", challenge.nonce, helloText(base)),
    } satisfies HelloMsg);
    const reply = (await ch.recvJson(Tag.Table, cfg.timeoutMs)) as { table?: Table; mac?: unknown };
    if (
      !Array.isArray(reply.table) ||
      !macOk(identity.token ?? "", base.nonce, JSON.stringify(reply.table), reply.mac)
    ) {
      throw new DistributedError(
        `the process at ${cfg.masterAddr}:${cfg.masterPort} does not know the run's secret; it is not this run's rank 0`,
      );
    }
    return reply.table;
  } finally {
    ch.close();
  }
}

/**
 * The ring's sending side: the first connection that proves it is `nextRank` of this run (strangers are dropped);
 * it is answered with this rank's own proof, so the receiver knows whose data it reads.
 */
async function acceptRingPeer(
  acceptor: Acceptor,
  rank: number,
  nextRank: number,
  token: string,
  deadline: number,
): Promise<Channel> {
  for (;;) {
    const s = await acceptor.next(deadline, `rank ${nextRank}`);
    const host = normaliseAddress(s.remoteAddress);
    const ch = Channel.over(s, `rank ${nextRank}`);
    ch.maxFrame = HANDSHAKE_FRAME;
    try {
      const nonce = newNonce();
      await ch.sendJson(Tag.Challenge, { nonce });
      const ph = (await ch.recvJson(Tag.RingHello, Math.min(HANDSHAKE_MS, Math.max(1, deadline - Date.now())))) as {
        rank?: unknown;
        nonce?: unknown;
        mac?: unknown;
      };
      if (ph.rank === nextRank && typeof ph.nonce === "string" && macOk(token, nonce, `ring ${nextRank}`, ph.mac)) {
        await ch.sendJson(Tag.RingAck, { mac: mac(token, ph.nonce, `ring-ack ${rank}`) });
        ch.maxFrame = Number.POSITIVE_INFINITY;
        return ch;
      }
      log().warn(
        { peer: host, claimed: ph.rank },
        "Refused a ring connection: not the expected rank or without the run's secret",
      );
    } catch (e) {
      log().warn({ peer: host, err: (e as Error).message }, "Dropped a ring connection during the handshake");
    }
    ch.close();
  }
}

/** The ring's receiving side: connect to `prevRank`'s ring port, prove this rank, check prev's proof (exported for tests). */
export async function connectRingPeer(
  host: string,
  port: number,
  rank: number,
  prevRank: number,
  token: string,
  deadline: number,
  timeoutMs: number,
): Promise<Channel> {
  const prev = await connectWithRetry(host, port, deadline, `rank ${prevRank}`);
  const challenge = (await prev.recvJson(Tag.Challenge, timeoutMs)) as { nonce?: unknown };
  if (typeof challenge.nonce !== "string")
    throw new DistributedError(`protocol error: rank ${prevRank} sent no challenge`);
  const nonce = newNonce();
  await prev.sendJson(Tag.RingHello, { rank, nonce, mac: mac(token, challenge.nonce, `ring ${rank}`) });
  const ack = (await prev.recvJson(Tag.RingAck, timeoutMs)) as { mac?: unknown };
  if (!macOk(token, nonce, `ring-ack ${prevRank}`, ack.mac)) {
    prev.close();
    throw new DistributedError(
      `the process at ${host}:${port} does not know the run's secret; it is not this run's rank ${prevRank}`,
    );
  }
  return prev;
}

/**
 * Join the process group described by `cfg`. Returns a SingleProcessGroup for a world of one. `identity` (run and
 * attempt) keeps a rank of an old attempt from joining a new one; its token (the per-run secret) keeps strangers on
 * the pod network from joining the rendezvous or the ring and feeding gradients.
 */
export async function initProcessGroup(
  cfg: Pick<DistributedConfig, "rank" | "worldSize" | "masterAddr" | "masterPort" | "timeoutMs">,
  identity: Identity = {
    run: envString("SSL3D_RUN") ?? "",
    attempt: envString("SSL3D_ATTEMPT") ?? "",
    token: runSecretFromEnv(),
  },
): Promise<ProcessGroup> {
  if (cfg.worldSize === 1) return new SingleProcessGroup();
  const { rank, worldSize, timeoutMs } = cfg;
  const token = identity.token ?? "";
  const deadline = Date.now() + timeoutMs;
  const ring = net.createServer();
  const ringAcceptor = new Acceptor(ring);
  const ringPort = await listen(ring, 0, "0.0.0.0");
  const prevRank = (rank - 1 + worldSize) % worldSize;
  const nextRank = (rank + 1) % worldSize;
  // Data flows rank r -> r+1 over the connection r+1 opened, so the receiver reads with onread (channel.ts).
  const nextChannel = acceptRingPeer(ringAcceptor, rank, nextRank, token, deadline);
  // Awaited below; this handler only keeps an early failure elsewhere from leaving it unhandled.
  nextChannel.catch(() => undefined);
  try {
    const table =
      rank === 0
        ? await rendezvousAsRank0(cfg, worldSize, ringPort, identity, deadline)
        : await rendezvousAsJoiner(cfg, rank, worldSize, ringPort, identity, deadline);
    const prevEntry = table[prevRank];
    if (prevEntry === undefined) throw new DistributedError(`protocol error: no endpoint for rank ${prevRank}`);
    const prev = await connectRingPeer(
      prevEntry.host ?? cfg.masterAddr,
      prevEntry.port,
      rank,
      prevRank,
      token,
      deadline,
      timeoutMs,
    );
    const next = await nextChannel;
    const group = new RingProcessGroup(rank, worldSize, next, prev, timeoutMs);
    await group.barrier();
    return group;
  } finally {
    ring.close();
  }
}
