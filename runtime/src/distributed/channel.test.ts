// The ring's framing over real loopback sockets: Data frames land in the posted buffer whatever the read boundaries
// (split headers, floats split across reads), early frames wait for their receive, wrong sizes, a dying peer and a
// silent one fail with a DistributedError (exit code 5) instead of hanging.
import assert from "node:assert/strict";
import * as net from "node:net";
import { test } from "node:test";
import { DistributedError, exitCodeOf } from "../errors.js";
import { bytesOf, Channel, connectChannel, Tag } from "./channel.js";

/** A listening server; `receiver` reads it through onread (connectChannel) or through 'data' events (Channel.over). */
async function pair(receiver: "onread" | "data"): Promise<{ raw: net.Socket; ch: Channel; close: () => void }> {
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  if (receiver === "onread") {
    const ch = await connectChannel("127.0.0.1", port, "the test peer");
    const raw = await accepted;
    server.close();
    return {
      raw,
      ch,
      close: () => {
        ch.close();
        raw.destroy();
      },
    };
  }
  const raw = net.connect(port, "127.0.0.1");
  const ch = Channel.over(await accepted, "the test peer");
  server.close();
  await new Promise((r) => raw.once("connect", r));
  return {
    raw,
    ch,
    close: () => {
      ch.close();
      raw.destroy();
    },
  };
}

function frame(tag: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt32BE(tag, 0);
  head.writeBigUInt64BE(BigInt(body.length), 4);
  return Buffer.concat([head, body]);
}

/** Write `bytes` in pieces of odd sizes, each flushed on its own, so reads end inside headers and floats. */
async function writeRagged(s: net.Socket, bytes: Buffer, sizes = [1, 5, 7, 3, 13, 4097, 65_539]): Promise<void> {
  let o = 0;
  for (let i = 0; o < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    await new Promise<void>((resolve) =>
      s.write(bytes.subarray(o, o + n), () => {
        resolve();
      }),
    );
    o += n;
  }
}

const ramp = (n: number, f: (i: number) => number): Float32Array => Float32Array.from({ length: n }, (_, i) => f(i));

for (const receiver of ["onread", "data"] as const) {
  test(
    `Data frames land in the posted buffers, added or copied, across ragged reads (${receiver})`,
    { timeout: 60_000 },
    async () => {
      const { raw, ch, close } = await pair(receiver);
      try {
        const sizes = [0, 1, 3, 1000, 300_001];
        const sent = sizes.map((n, k) => ramp(n, (i) => (i % 251) + k));
        const targets = sizes.map((n) => new Float32Array(n).fill(0.5));
        const received = targets.map((t, k) => ch.recvInto(t, k % 2 === 0, 30_000));
        await writeRagged(raw, Buffer.concat(sent.map((a) => frame(Tag.Data, bytesOf(a)))));
        await Promise.all(received);
        targets.forEach((t, k) => {
          const want = sent[k]!.map((v) => (k % 2 === 0 ? v + 0.5 : v));
          assert.deepEqual(t, want, `frame ${k} (${sizes[k]} floats)`);
        });
      } finally {
        close();
      }
    },
  );

  test(`a Data frame that arrives before its receive waits for it (${receiver})`, { timeout: 60_000 }, async () => {
    const { raw, ch, close } = await pair(receiver);
    try {
      const a = ramp(70_001, (i) => i % 17),
        b = ramp(5, (i) => -i);
      raw.write(Buffer.concat([frame(Tag.Data, bytesOf(a)), frame(Tag.Data, bytesOf(b))]));
      await new Promise((r) => setTimeout(r, 300));
      const ta = new Float32Array(a.length),
        tb = new Float32Array(b.length).fill(1);
      await ch.recvInto(ta, false, 30_000);
      await ch.recvInto(tb, true, 30_000);
      assert.deepEqual(ta, a);
      assert.deepEqual(
        tb,
        b.map((v) => v + 1),
      );
    } finally {
      close();
    }
  });
}

test("a Data frame of the wrong size is a protocol error naming both sizes", async () => {
  const { raw, ch, close } = await pair("onread");
  try {
    raw.write(frame(Tag.Data, new Uint8Array(8)));
    await assert.rejects(
      ch.recvInto(new Float32Array(3), false, 30_000),
      (e: Error) => e instanceof DistributedError && /sent 8 bytes, expected 12/.test(e.message),
    );
  } finally {
    close();
  }
});

test(
  "a peer that dies in the middle of a frame fails the receive with exit code 5, not a hang",
  { timeout: 30_000 },
  async () => {
    const { raw, ch, close } = await pair("onread");
    try {
      const target = new Float32Array(1 << 20);
      const got = ch.recvInto(target, true, 60_000);
      raw.write(frame(Tag.Data, new Uint8Array(target.byteLength)).subarray(0, 1_000_003), () => raw.destroy());
      await assert.rejects(got, (e: Error) => exitCodeOf(e) === 5 && /closed|failed/.test(e.message));
      // later collectives on the dead connection fail at once
      await assert.rejects(ch.recvInto(new Float32Array(1), false, 60_000), DistributedError);
    } finally {
      close();
    }
  },
);

test("a silent peer fails the receive after the timeout", { timeout: 30_000 }, async () => {
  const { raw, ch, close } = await pair("onread");
  try {
    raw.write(frame(Tag.Data, new Uint8Array(40)).subarray(0, 20)); // a header and part of the body, then nothing
    await assert.rejects(ch.recvInto(new Float32Array(10), false, 400), /timed out/);
  } finally {
    close();
  }
});
