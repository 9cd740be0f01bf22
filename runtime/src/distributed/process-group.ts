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
 * (addresses as rank 0 observed them).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import * as net from "node:net";
import { log } from "../observability/log.js";
import { DistributedError } from "../errors.js";
import type { DistributedConfig } from "./env.js";

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

const Tag = { Hello: 1, Table: 2, RingHello: 3, Data: 4, Challenge: 5 } as const;
type Tag = (typeof Tag)[keyof typeof Tag];

const HEADER = 12; // u32 tag, u64 length
/** Floats per all-reduce frame (4 MiB). */
const SEGMENT = 1 << 20;
interface Frame {
  tag: number;
  body: Buffer;
}

/** A socket carrying length-prefixed frames, read into a queue as they arrive. */
class Channel {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly frames: Frame[] = [];
  private readonly waiters: { resolve: (f: Frame) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;
  /** Largest frame accepted; small until the peer has authenticated, so a stranger cannot make us buffer gigabytes. */
  maxFrame = Number.POSITIVE_INFINITY;

  constructor(
    readonly socket: net.Socket,
    private readonly peer: string,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => {
      this.onData(d);
    });
    socket.on("error", (e) => {
      this.fail(new DistributedError(`connection to ${this.peer} failed: ${e.message}`));
    });
    socket.on("close", () => {
      this.fail(new DistributedError(`connection to ${this.peer} closed (the peer process exited or was killed)`));
    });
  }

  private onData(d: Buffer): void {
    this.chunks.push(d);
    this.buffered += d.length;
    for (;;) {
      if (this.buffered < HEADER) return;
      const head = this.peek(HEADER);
      const tag = head.readUInt32BE(0);
      const len = Number(head.readBigUInt64BE(4));
      if (len > this.maxFrame) {
        this.fail(new DistributedError(`protocol error: ${this.peer} sent a ${len}-byte frame before authenticating`));
        this.socket.destroy();
        return;
      }
      if (this.buffered < HEADER + len) return;
      const all = this.take(HEADER + len);
      const frame = { tag, body: all.subarray(HEADER) };
      const w = this.waiters.shift();
      if (w !== undefined) w.resolve(frame);
      else this.frames.push(frame);
    }
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= n) return first;
    const merged = Buffer.concat(this.chunks);
    this.chunks = [merged];
    return merged;
  }

  private take(n: number): Buffer {
    const merged = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = merged.subarray(0, n);
    const rest = merged.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  private fail(e: Error): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  send(tag: Tag, body: Uint8Array): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const head = Buffer.alloc(HEADER);
    head.writeUInt32BE(tag, 0);
    head.writeBigUInt64BE(BigInt(body.byteLength), 4);
    return new Promise((resolve, reject) => {
      this.socket.write(head);
      this.socket.write(body, (err) => {
        if (err) reject(new DistributedError(`sending to ${this.peer} failed: ${err.message}`));
        else resolve();
      });
    });
  }

  recv(expected: Tag, timeoutMs: number): Promise<Buffer> {
    const check = (f: Frame): Buffer => {
      if (f.tag !== expected) throw new DistributedError(`protocol error: expected message ${expected} from ${this.peer}, got ${f.tag}`);
      return f.body;
    };
    const ready = this.frames.shift();
    if (ready !== undefined) {
      try {
        return Promise.resolve(check(ready));
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (f: Frame) => {
          clearTimeout(timer);
          try {
            resolve(check(f));
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new DistributedError(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${this.peer}`));
      }, timeoutMs);
      timer.unref();
      this.waiters.push(waiter);
    });
  }

  async sendJson(tag: Tag, value: unknown): Promise<void> {
    await this.send(tag, Buffer.from(JSON.stringify(value)));
  }

  async recvJson(tag: Tag, timeoutMs: number): Promise<unknown> {
    return JSON.parse((await this.recv(tag, timeoutMs)).toString("utf8")) as unknown;
  }

  close(): void {
    this.failure ??= new DistributedError(`connection to ${this.peer} closed locally`);
    this.socket.destroy();
  }
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Copy a received frame into an aligned Float32Array (frames are not 4-byte aligned in general). */
function floatsFrom(body: Buffer, expectedLength: number, peer: string): Float32Array {
  if (body.length !== expectedLength * 4) {
    throw new DistributedError(`protocol error: ${peer} sent ${body.length} bytes, expected ${expectedLength * 4} (do all ranks run the same model?)`);
  }
  const out = new Float32Array(expectedLength);
  new Uint8Array(out.buffer).set(body);
  return out;
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
export function runSecretFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  const file = env.SSL3D_RUN_SECRET_FILE;
  if (file === undefined || file === "") return "";
  try {
    const token = readFileSync(file, "utf8").trim();
    if (token === "") throw new Error("empty");
    return token;
  } catch (e) {
    throw new DistributedError(`cannot read the run's rendezvous secret: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file, field: "SSL3D_RUN_SECRET_FILE" });
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

class RingProcessGroup implements ProcessGroup {
  constructor(
    readonly rank: number,
    readonly worldSize: number,
    private readonly next: Channel,
    private readonly prev: Channel,
    private readonly timeoutMs: number,
  ) {}

  async allReduceSum(buf: Float32Array): Promise<void> {
    const n = this.worldSize;
    const offs = splitRanges(buf.length, n);
    const chunk = (i: number): Float32Array => buf.subarray(offs[i], offs[i + 1]);
    const mod = (i: number): number => ((i % n) + n) % n;
    // Reduce-scatter: after n-1 steps rank r holds the full sum of chunk r+1.
    for (let s = 0; s < n - 1; s++) {
      await this.exchange(chunk(mod(this.rank - s)), chunk(mod(this.rank - s - 1)), true);
    }
    // All-gather: circulate the reduced chunks.
    for (let s = 0; s < n - 1; s++) {
      await this.exchange(chunk(mod(this.rank - s + 1)), chunk(mod(this.rank - s)), false);
    }
  }

  /**
   * Send `out` to the next rank while receiving the previous rank's chunk into `into` (added when `reduce`), in
   * SEGMENT-sized frames: each segment is reduced while the following ones are still on the wire, so the summation
   * overlaps the transfer instead of waiting for a whole chunk (bench/allreduce.ts measures the difference).
   */
  private async exchange(out: Float32Array, into: Float32Array, reduce: boolean): Promise<void> {
    const sends: Promise<void>[] = [];
    for (let o = 0; o < out.length || o === 0; o += SEGMENT) sends.push(this.next.send(Tag.Data, bytesOf(out.subarray(o, o + SEGMENT))));
    // Promise.all below so a failed send is handled even when the receive fails first.
    const received = (async (): Promise<void> => {
      const tmp = new Float32Array(Math.min(SEGMENT, into.length));
      for (let o = 0; o < into.length || o === 0; o += SEGMENT) {
        const target = into.subarray(o, o + SEGMENT);
        const body = await this.prev.recv(Tag.Data, this.timeoutMs);
        if (body.length !== target.length * 4) {
          throw new DistributedError(`protocol error: the previous rank sent ${body.length} bytes, expected ${target.length * 4} (do all ranks run the same model?)`);
        }
        if (!reduce) {
          bytesOf(target).set(body);
          continue;
        }
        const got = tmp.subarray(0, target.length);
        bytesOf(got).set(body); // frames are not 4-byte aligned in general
        for (let i = 0; i < target.length; i++) target[i] = got[i]! + target[i]!;
      }
    })();
    await Promise.all([...sends, received]);
  }

  async allReduceMean(buf: Float32Array): Promise<void> {
    await this.allReduceSum(buf);
    const inv = 1 / this.worldSize;
    for (let i = 0; i < buf.length; i++) buf[i] = buf[i]! * inv;
  }

  async broadcast(buf: Float32Array, root = 0): Promise<void> {
    const n = this.worldSize;
    const last = (root - 1 + n) % n; // the rank that does not forward
    const piece = 1 << 20; // elements per pipelined piece (4 MiB)
    let off = 0;
    do {
      const part = buf.subarray(off, Math.min(buf.length, off + piece));
      if (this.rank !== root) {
        part.set(floatsFrom(await this.prev.recv(Tag.Data, this.timeoutMs), part.length, "the previous rank"));
      }
      if (this.rank !== last) await this.next.send(Tag.Data, bytesOf(part));
      off += piece;
    } while (off < buf.length);
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

async function connectWithRetry(host: string, port: number, deadline: number, what: string): Promise<net.Socket> {
  let delay = 100;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      return await new Promise<net.Socket>((resolve, reject) => {
        const s = net.connect({ host, port });
        s.once("connect", () => {
          s.removeAllListeners("error");
          resolve(s);
        });
        s.once("error", (e: NodeJS.ErrnoException) => {
          s.destroy();
          reject(new Error(e.code ?? e.message));
        });
      });
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
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new DistributedError(`timed out waiting for ${what} to connect`));
      }, Math.max(0, deadline - Date.now()));
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
  return typeof o === "object" && o !== null && typeof o.rank === "number" && typeof o.worldSize === "number" && typeof o.ringPort === "number" &&
    typeof o.run === "string" && typeof o.attempt === "string" && typeof o.nonce === "string";
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
async function admitJoiner(s: net.Socket, identity: Identity, worldSize: number): Promise<{ ch: Channel; hello: HelloMsg; host: string } | undefined> {
  const host = normaliseAddress(s.remoteAddress);
  const ch = new Channel(s, `a joining rank (${host})`);
  ch.maxFrame = HANDSHAKE_FRAME;
  try {
    const nonce = newNonce();
    await ch.sendJson(Tag.Challenge, { nonce });
    const hello = await ch.recvJson(Tag.Hello, HANDSHAKE_MS);
    if (!isHello(hello) || !macOk(identity.token ?? "", nonce, helloText(hello), hello.mac)) {
      log().warn({ peer: host }, "Refused a connection to the rendezvous port: it did not prove it knows the run's secret");
      ch.close();
      return undefined;
    }
    if (hello.run !== identity.run || hello.attempt !== identity.attempt) {
      ch.close(); // a straggler of another run or attempt: ignore it
      return undefined;
    }
    if (hello.worldSize !== worldSize) {
      throw new DistributedError(`rank ${hello.rank} believes the world size is ${hello.worldSize}, rank 0 believes ${worldSize}`);
    }
    ch.maxFrame = Number.POSITIVE_INFINITY;
    return { ch, hello, host };
  } catch (e) {
    if (e instanceof DistributedError && /world size/.test(e.message)) throw e;
    log().warn({ peer: host, err: (e as Error).message }, "Dropped a connection to the rendezvous port during the handshake");
    ch.close();
    return undefined;
  }
}

/** Rank 0: admit authenticated ranks 1..N-1 (every connection is handled on its own; strangers are dropped), send the table. */
async function rendezvousAsRank0(cfg: { masterPort: number }, worldSize: number, ringPort: number, identity: Identity, deadline: number): Promise<Table> {
  const control = net.createServer();
  const peers = new Map<number, { ch: Channel; host: string; port: number; nonce: string }>();
  const accepted = new Set<net.Socket>();
  const complete = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new DistributedError(`timed out waiting for ${worldSize - 1 - peers.size} more rank(s) to connect`));
    }, Math.max(0, deadline - Date.now()));
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
    await Promise.all([...peers.values()].map((p) => p.ch.sendJson(Tag.Table, { table, mac: mac(identity.token ?? "", p.nonce, text) })));
    return table;
  } finally {
    for (const p of peers.values()) p.ch.close();
    for (const s of accepted) s.destroy(); // handshakes still pending (a silent stranger) end with the rendezvous
    control.close();
  }
}

/** Ranks 1..N-1: answer rank 0's challenge, check that the table comes from someone who knows the secret. */
async function rendezvousAsJoiner(cfg: { masterAddr: string; masterPort: number; timeoutMs: number }, rank: number, worldSize: number, ringPort: number, identity: Identity, deadline: number): Promise<Table> {
  const s = await connectWithRetry(cfg.masterAddr, cfg.masterPort, deadline, "rank 0");
  const ch = new Channel(s, "rank 0");
  try {
    const challenge = (await ch.recvJson(Tag.Challenge, cfg.timeoutMs)) as { nonce?: unknown };
    if (typeof challenge.nonce !== "string") throw new DistributedError("protocol error: rank 0 sent no challenge");
    const base = { rank, worldSize, ringPort, run: identity.run, attempt: identity.attempt, nonce: newNonce() };
    await ch.sendJson(Tag.Hello, { ...base, mac: mac(identity.token ?? "", challenge.nonce, helloText(base)) } satisfies HelloMsg);
    const reply = (await ch.recvJson(Tag.Table, cfg.timeoutMs)) as { table?: Table; mac?: unknown };
    if (!Array.isArray(reply.table) || !macOk(identity.token ?? "", base.nonce, JSON.stringify(reply.table), reply.mac)) {
      throw new DistributedError(`the process at ${cfg.masterAddr}:${cfg.masterPort} does not know the run's secret; it is not this run's rank 0`);
    }
    return reply.table;
  } finally {
    ch.close();
  }
}

/** The ring's receiving side: the first connection that proves it is `prevRank` of this run; strangers are dropped. */
async function acceptRingPeer(acceptor: Acceptor, prevRank: number, token: string, deadline: number): Promise<Channel> {
  for (;;) {
    const s = await acceptor.next(deadline, `rank ${prevRank}`);
    const host = normaliseAddress(s.remoteAddress);
    const ch = new Channel(s, `rank ${prevRank}`);
    ch.maxFrame = HANDSHAKE_FRAME;
    try {
      const nonce = newNonce();
      await ch.sendJson(Tag.Challenge, { nonce });
      const ph = (await ch.recvJson(Tag.RingHello, Math.min(HANDSHAKE_MS, Math.max(1, deadline - Date.now())))) as { rank?: unknown; mac?: unknown };
      if (ph.rank === prevRank && macOk(token, nonce, `ring ${prevRank}`, ph.mac)) {
        ch.maxFrame = Number.POSITIVE_INFINITY;
        return ch;
      }
      log().warn({ peer: host, claimed: ph.rank }, "Refused a ring connection: not the expected rank or without the run's secret");
    } catch (e) {
      log().warn({ peer: host, err: (e as Error).message }, "Dropped a ring connection during the handshake");
    }
    ch.close();
  }
}

/**
 * Join the process group described by `cfg`. Returns a SingleProcessGroup for a world of one. `identity` (run and
 * attempt) keeps a rank of an old attempt from joining a new one; its token (the per-run secret) keeps strangers on
 * the pod network from joining the rendezvous or the ring and feeding gradients.
 */
export async function initProcessGroup(
  cfg: Pick<DistributedConfig, "rank" | "worldSize" | "masterAddr" | "masterPort" | "timeoutMs">,
  identity: Identity = { run: process.env.SSL3D_RUN ?? "", attempt: process.env.SSL3D_ATTEMPT ?? "", token: runSecretFromEnv() },
): Promise<ProcessGroup> {
  if (cfg.worldSize === 1) return new SingleProcessGroup();
  const { rank, worldSize, timeoutMs } = cfg;
  const token = identity.token ?? "";
  const deadline = Date.now() + timeoutMs;
  const ring = net.createServer();
  const ringAcceptor = new Acceptor(ring);
  const ringPort = await listen(ring, 0, "0.0.0.0");
  const prevRank = (rank - 1 + worldSize) % worldSize;
  const prevChannel = acceptRingPeer(ringAcceptor, prevRank, token, deadline);
  // Awaited below; this handler only keeps an early failure elsewhere from leaving it unhandled.
  prevChannel.catch(() => undefined);
  try {
    const table = rank === 0 ? await rendezvousAsRank0(cfg, worldSize, ringPort, identity, deadline) : await rendezvousAsJoiner(cfg, rank, worldSize, ringPort, identity, deadline);
    const nextRank = (rank + 1) % worldSize;
    const nextEntry = table[nextRank];
    if (nextEntry === undefined) throw new DistributedError(`protocol error: no endpoint for rank ${nextRank}`);
    const nextSocket = await connectWithRetry(nextEntry.host ?? cfg.masterAddr, nextEntry.port, deadline, `rank ${nextRank}`);
    const next = new Channel(nextSocket, `rank ${nextRank}`);
    const challenge = (await next.recvJson(Tag.Challenge, timeoutMs)) as { nonce?: unknown };
    if (typeof challenge.nonce !== "string") throw new DistributedError(`protocol error: rank ${nextRank} sent no challenge`);
    await next.sendJson(Tag.RingHello, { rank, mac: mac(token, challenge.nonce, `ring ${rank}`) });
    const prev = await prevChannel;
    const group = new RingProcessGroup(rank, worldSize, next, prev, timeoutMs);
    await group.barrier();
    return group;
  } finally {
    ring.close();
  }
}
