/**
 * One TCP connection of the process group carrying length-prefixed frames (u32 tag, u64 length, body).
 *
 * Control frames (the handshake's JSON) are read into a buffer of their own and queued. Data frames (collectives)
 * are never buffered: a collective first posts a receive (`recvInto`: the destination Float32Array and whether to
 * add into it), and the frame's bytes go straight into that memory. On a socket opened with `connectChannel` the
 * kernel copies them there itself (Node's `onread` with a buffer per read); a reduction reads into one reused,
 * aligned scratch buffer and adds it in place. A Data frame that arrives before its receive is posted pauses the
 * socket (TCP back-pressure) instead of being buffered. ADR 0075 records why.
 */
import * as net from "node:net";
import { DistributedError } from "../errors.js";
import { addInto } from "./float32.js";

export const Tag = { Hello: 1, Table: 2, RingHello: 3, Data: 4, Challenge: 5, RingAck: 6 } as const;
export type Tag = (typeof Tag)[keyof typeof Tag];

const HEADER = 12; // u32 tag, u64 length
/** Scratch for reductions (bytes): large enough that one read rarely fills it, small enough to stay in cache. */
const SCRATCH = 1 << 20;
/** Where a read lands after the socket was paused (the buffer Node reuses on resume). */
const SPILL = 64 * 1024;

interface Frame {
  tag: number;
  body: Buffer;
}

/** A posted receive of one Data frame. */
interface Sink {
  readonly bytes: Uint8Array;
  readonly floats: Float32Array;
  readonly reduce: boolean;
  resolve(): void;
  reject(e: Error): void;
}

export function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export class Channel {
  private socket: net.Socket | undefined;
  private readonly head = Buffer.alloc(HEADER);
  private headGot = 0;
  private phase: "head" | "frame" | "data" = "head";
  private body: Buffer = Buffer.alloc(0);
  private bodyTag = 0;
  private bodyGot = 0;
  /** Length of the current Data frame, bytes of it consumed, bytes already added into the sink (reduce). */
  private dataLen = 0;
  private dataGot = 0;
  private reduced = 0;
  /** Bytes at the start of `scratch` waiting for the rest of their float. */
  private carry = 0;
  private scratch: Uint8Array | undefined;
  private scratchFloats: Float32Array | undefined;
  private spill: Uint8Array | undefined;
  private paused = false;
  /** The unread rest of a 'data' chunk while paused. */
  private stash: Buffer | undefined;
  private readonly sinks: Sink[] = [];
  private readonly frames: Frame[] = [];
  private readonly waiters: { resolve: (f: Frame) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;
  private progressAt = 0;
  /** Largest frame accepted; small until the peer has authenticated, so a stranger cannot make us buffer gigabytes. */
  maxFrame = Number.POSITIVE_INFINITY;

  constructor(private readonly peer: string) {}

  /** Read an accepted (or any already open) socket through 'data' events. */
  static over(socket: net.Socket, peer: string): Channel {
    const ch = new Channel(peer);
    ch.attach(socket);
    socket.on("data", (d: Buffer) => {
      ch.feed(d);
    });
    return ch;
  }

  /** Reads of `this.socket` through `onread` (see `connectChannel`). */
  readHandlers(): { buffer: () => Uint8Array; callback: (n: number, buf: Uint8Array) => boolean } {
    return {
      buffer: () => this.nextBuffer(),
      callback: (n, buf) => this.onRead(n, buf),
    };
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("error", (e) => {
      this.fail(new DistributedError(`connection to ${this.peer} failed: ${e.message}`));
    });
    socket.on("close", () => {
      this.fail(new DistributedError(`connection to ${this.peer} closed (the peer process exited or was killed)`));
    });
  }

  // ---- receiving ----------------------------------------------------------------------------------------------

  private waitingForSink(): boolean {
    return this.phase === "data" && this.sinks.length === 0;
  }

  /** The memory the next read should go into. */
  private nextBuffer(): Uint8Array {
    if (this.paused || this.failure !== undefined) return (this.spill ??= new Uint8Array(SPILL));
    if (this.phase === "head") return this.head.subarray(this.headGot);
    if (this.phase === "frame") return this.body.subarray(this.bodyGot);
    const sink = this.sinks[0]!;
    if (!sink.reduce) return sink.bytes.subarray(this.dataGot, this.dataLen);
    this.scratch ??= new Uint8Array(SCRATCH);
    this.scratchFloats ??= new Float32Array(this.scratch.buffer);
    return this.scratch.subarray(this.carry, this.carry + Math.min(this.dataLen - this.dataGot, SCRATCH - this.carry));
  }

  /** onread's callback: `n` bytes were read into `buf`. False pauses the socket. */
  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.failure !== undefined) return false;
    if (buf === this.spill) {
      this.paused = false;
      this.feed(Buffer.from(buf.subarray(0, n))); // copied: the spill buffer is where the next read may land
    } else {
      this.consume(n);
    }
    if (this.paused || this.waitingForSink()) {
      this.paused = true;
      return false;
    }
    return true;
  }

  /** Copy a chunk read elsewhere into the places the frames go. False: paused, the rest kept for later. */
  private feed(chunk: Buffer): boolean {
    let rest = chunk;
    while (rest.length > 0 && this.failure === undefined) {
      if (this.waitingForSink()) {
        this.stash = rest;
        this.paused = true;
        this.socket?.pause();
        return false;
      }
      const dst = this.nextBuffer();
      const k = Math.min(dst.length, rest.length);
      dst.set(rest.subarray(0, k));
      this.consume(k);
      rest = rest.subarray(k);
    }
    return true;
  }

  /** `n` bytes arrived in the buffer `nextBuffer()` returned. */
  private consume(n: number): void {
    this.progressAt = Date.now();
    if (this.phase === "head") {
      this.headGot += n;
      if (this.headGot === HEADER) this.startFrame();
    } else if (this.phase === "frame") {
      this.bodyGot += n;
      if (this.bodyGot === this.body.length) this.endFrame();
    } else {
      this.consumeData(n);
    }
  }

  private startFrame(): void {
    this.headGot = 0;
    const tag = this.head.readUInt32BE(0);
    const len = Number(this.head.readBigUInt64BE(4));
    if (len > this.maxFrame) {
      this.fail(new DistributedError(`protocol error: ${this.peer} sent a ${len}-byte frame before authenticating`));
      this.socket?.destroy();
      return;
    }
    if (tag === Tag.Data) {
      this.phase = "data";
      this.dataLen = len;
      this.dataGot = this.reduced = this.carry = 0;
      if (this.sinks.length > 0) this.checkData();
      return;
    }
    this.bodyTag = tag;
    this.body = Buffer.allocUnsafe(len);
    this.bodyGot = 0;
    this.phase = "frame";
    if (len === 0) this.endFrame();
  }

  private endFrame(): void {
    this.phase = "head";
    const frame = { tag: this.bodyTag, body: this.body };
    const w = this.waiters.shift();
    if (w !== undefined) w.resolve(frame);
    else this.frames.push(frame);
  }

  /** The current Data frame has met its sink: sizes must agree; an empty frame is complete at once. */
  private checkData(): void {
    const sink = this.sinks[0]!;
    if (this.dataLen !== sink.bytes.length) {
      this.fail(
        new DistributedError(
          `protocol error: ${this.peer} sent ${this.dataLen} bytes, expected ${sink.bytes.length} (do all ranks run the same model?)`,
        ),
      );
      this.socket?.destroy();
      return;
    }
    if (this.dataLen === 0) this.endData();
  }

  private consumeData(n: number): void {
    const sink = this.sinks[0]!;
    this.dataGot += n;
    if (sink.reduce) {
      const total = this.carry + n;
      const whole = total >> 2;
      const at = this.reduced >> 2;
      addInto(sink.floats.subarray(at, at + whole), this.scratchFloats!.subarray(0, whole));
      this.reduced += whole * 4;
      this.carry = total - whole * 4;
      if (this.carry > 0) this.scratch!.copyWithin(0, whole * 4, total);
    }
    if (this.dataGot === this.dataLen) this.endData();
  }

  private endData(): void {
    this.phase = "head";
    this.sinks.shift()!.resolve();
    if (this.sinks.length > 0) this.progressAt = Date.now();
  }

  /**
   * Receive the next Data frame into `target` (added to it when `reduce`). Fails when the frame's size differs, the
   * connection fails, or no byte arrives for `timeoutMs`.
   */
  recvInto(target: Float32Array, reduce: boolean, timeoutMs: number): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const sink: Sink = {
        bytes: bytesOf(target),
        floats: target,
        reduce,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const watch = (): void => {
        const idle = Date.now() - this.progressAt;
        if (idle < timeoutMs) {
          timer = setTimeout(watch, timeoutMs - idle);
          timer.unref();
          return;
        }
        this.fail(new DistributedError(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${this.peer}`));
        this.socket?.destroy();
      };
      this.sinks.push(sink);
      if (this.sinks.length === 1) this.progressAt = Date.now();
      timer = setTimeout(watch, timeoutMs);
      timer.unref();
      if (this.phase === "data" && this.sinks.length === 1) this.checkData();
      this.resume();
    });
  }

  private resume(): void {
    if (!this.paused || this.waitingForSink() || this.failure !== undefined) return;
    const stash = this.stash;
    this.stash = undefined;
    this.paused = false;
    if (stash !== undefined && !this.feed(stash)) return;
    this.socket?.resume();
  }

  private fail(e: Error): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
    for (const s of this.sinks.splice(0)) s.reject(e);
  }

  recv(expected: Tag, timeoutMs: number): Promise<Buffer> {
    const check = (f: Frame): Buffer => {
      if (f.tag !== expected)
        throw new DistributedError(`protocol error: expected message ${expected} from ${this.peer}, got ${f.tag}`);
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

  async recvJson(tag: Tag, timeoutMs: number): Promise<unknown> {
    return JSON.parse((await this.recv(tag, timeoutMs)).toString("utf8")) as unknown;
  }

  // ---- sending ------------------------------------------------------------------------------------------------

  /** One frame: the header, then `body` written from its own memory (not copied; keep it unchanged until resolved). */
  send(tag: Tag, body: Uint8Array): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const socket = this.socket;
    if (socket === undefined) return Promise.reject(new DistributedError(`not connected to ${this.peer}`));
    const head = Buffer.alloc(HEADER);
    head.writeUInt32BE(tag, 0);
    head.writeBigUInt64BE(BigInt(body.byteLength), 4);
    return new Promise((resolve, reject) => {
      // corked: header and body leave in one writev, not as a 12-byte packet of their own (the socket is NoDelay)
      socket.cork();
      socket.write(head);
      socket.write(body, (err) => {
        if (err) reject(new DistributedError(`sending to ${this.peer} failed: ${err.message}`));
        else resolve();
      });
      socket.uncork();
    });
  }

  async sendJson(tag: Tag, value: unknown): Promise<void> {
    await this.send(tag, Buffer.from(JSON.stringify(value)));
  }

  close(): void {
    this.failure ??= new DistributedError(`connection to ${this.peer} closed locally`);
    for (const s of this.sinks.splice(0)) s.reject(this.failure);
    this.socket?.destroy();
  }
}

/** Connect to `host:port`; the channel reads the socket with `onread`, so Data frames land in their sink directly. */
export function connectChannel(host: string, port: number, peer: string): Promise<Channel> {
  const ch = new Channel(peer);
  return new Promise<Channel>((resolve, reject) => {
    const s = net.connect({ host, port, onread: ch.readHandlers() });
    s.once("connect", () => {
      s.removeAllListeners("error");
      ch.attach(s);
      resolve(ch);
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.destroy();
      reject(new Error(e.code ?? e.message));
    });
  });
}
