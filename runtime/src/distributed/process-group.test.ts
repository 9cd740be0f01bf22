// The ring handshake is mutual: the receiving rank (which connects) accepts data only from a peer that proves it
// knows the run's secret, as the peer accepts only a connection that proves the same.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import * as net from "node:net";
import { test } from "node:test";
import { Channel, Tag } from "./channel.js";
import { connectRingPeer, SingleProcessGroup } from "./process-group.js";

const mac = (token: string, nonce: string, what: string): string =>
  createHmac("sha256", token).update(`${nonce}\n${what}`).digest("hex");

/** A ring port that challenges, checks rank 3's hello under `secret` and answers with an ack made under `ackSecret`. */
async function fakeRingPort(
  secret: string,
  ackSecret: string,
): Promise<{ port: number; hello: Promise<boolean>; close: () => void }> {
  const server = net.createServer();
  let ch: Channel | undefined;
  const hello = new Promise<boolean>((resolve) => {
    server.once("connection", (s) => {
      ch = Channel.over(s, "rank 3");
      void (async () => {
        await ch.sendJson(Tag.Challenge, { nonce: "c0ffee" });
        const h = (await ch.recvJson(Tag.RingHello, 10_000)) as { rank: number; nonce: string; mac: string };
        const ok = h.rank === 3 && h.mac === mac(secret, "c0ffee", "ring 3");
        await ch.sendJson(Tag.RingAck, { mac: mac(ackSecret, h.nonce, "ring-ack 2") });
        resolve(ok);
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    hello,
    close: () => {
      ch?.close();
      server.close();
    },
  };
}

test("the receiving rank proves itself and accepts a ring peer that knows the secret", async () => {
  const peer = await fakeRingPort("s3cret", "s3cret");
  try {
    const ch = await connectRingPeer("127.0.0.1", peer.port, 3, 2, "s3cret", Date.now() + 10_000, 10_000);
    assert.equal(await peer.hello, true);
    ch.close();
  } finally {
    peer.close();
  }
});

test("a ring peer that does not know the secret is refused before any data is read", async () => {
  const peer = await fakeRingPort("s3cret", "guessed");
  try {
    await assert.rejects(
      connectRingPeer("127.0.0.1", peer.port, 3, 2, "s3cret", Date.now() + 10_000, 10_000),
      /does not know the run's secret; it is not this run's rank 2/,
    );
  } finally {
    peer.close();
  }
});

test("a world of one needs no connection: every collective is the identity", async () => {
  const g = new SingleProcessGroup();
  const a = Float32Array.of(1, 2, 3);
  await g.allReduceSum(a);
  await g.allReduceMean(a);
  await g.broadcast(a, 0);
  await g.barrier();
  assert.deepEqual(a, Float32Array.of(1, 2, 3));
  assert.deepEqual([g.rank, g.worldSize], [0, 1]);
});
