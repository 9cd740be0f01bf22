/** The stop protocol: signal, deadline and peer requests map to one StopReason each; describeStop names them. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { TrainingError } from "../errors.js";
import { StopProtocol, describeStop, type StopSignal } from "./stop.js";

test("a signal request is reported with its reason", () => {
  const signal: StopSignal = { requested: false };
  const p = new StopProtocol(signal, undefined);
  assert.equal(p.requested(), false);
  signal.requested = true;
  signal.reason = "SIGTERM";
  assert.equal(p.requested(), true);
  assert.deepEqual(p.reason(), { kind: "signal", detail: "SIGTERM" });
  assert.equal(describeStop(p.reason()), "SIGTERM");
});

test("a passed deadline is a request; a future one is not", () => {
  assert.equal(new StopProtocol(undefined, Date.now() + 60_000).requested(), false);
  const past = Date.now() - 1;
  const p = new StopProtocol({ requested: false }, past);
  assert.equal(p.requested(), true);
  assert.deepEqual(p.reason(), { kind: "deadline", deadline: past });
  assert.match(describeStop(p.reason()), /^the deadline \d{4}-\d\d-\d\dT/);
});

test("a peer's stop marks the local signal (so the embedder sees it) and is reported as a peer stop", () => {
  const signal: StopSignal = { requested: false };
  const p = new StopProtocol(signal, undefined);
  p.peer();
  assert.deepEqual(signal, { requested: true, reason: "a peer rank's stop request" });
  assert.deepEqual(p.reason(), { kind: "peer" });
  // a local request is not overridden by a peer's
  const own: StopSignal = { requested: true, reason: "SIGUSR1" };
  const q = new StopProtocol(own, undefined);
  q.peer();
  assert.deepEqual(q.reason(), { kind: "signal", detail: "SIGUSR1" });
});

test("a divergence is described by its error", () => {
  const error = new TrainingError("training diverged: 3 consecutive non-finite steps");
  assert.equal(describeStop({ kind: "divergence", error }), error.message);
});
