/**
 * The Trainer's one stop protocol (ADR 0077). A run ends early for exactly one `StopReason`:
 * - `signal`: a stop request (SIGTERM/SIGUSR1 set by the CLI, or an embedder setting `StopSignal.requested`);
 * - `deadline`: the run's wall-clock deadline passed;
 * - `peer`: another data-parallel rank asked to stop (the flag is all-reduced with every step's gradients and at every
 *   epoch boundary, so all ranks stop after the same step);
 * - `divergence`: too many consecutive non-finite steps (the `NonFiniteGuard`); the run fails with its error.
 * Signal, deadline and peer stops end the loop after the current step with a resumable `checkpoint_latest`.
 */
import type { TrainingError } from "../errors.js";

/** Set by the CLI's signal handlers (or an embedder): ask the loop to stop after the current step. */
export interface StopSignal {
  requested: boolean;
  reason?: string;
}

export type StopReason =
  | { readonly kind: "signal"; readonly detail: string }
  | { readonly kind: "deadline"; readonly deadline: number }
  | { readonly kind: "peer" }
  | { readonly kind: "divergence"; readonly error: TrainingError };

const PEER_REASON = "a peer rank's stop request";

/** One line for logs and exit messages. */
export function describeStop(r: StopReason): string {
  switch (r.kind) {
    case "signal":
      return r.detail;
    case "deadline":
      return `the deadline ${new Date(r.deadline).toISOString()}`;
    case "peer":
      return PEER_REASON;
    case "divergence":
      return r.error.message;
  }
}

/** This process's side of the protocol: its local request (signal or deadline) and the group's decision. */
export class StopProtocol {
  private deadlinePassed = false;
  private fromPeer = false;

  /** `deadline`: milliseconds since the epoch (`Date.now()` clock). */
  constructor(
    private readonly signal: StopSignal | undefined,
    private readonly deadline: number | undefined,
  ) {}

  /** Whether this process asks to stop (a signal, or the deadline has passed). */
  requested(): boolean {
    if (this.signal?.requested === true) return true;
    if (this.deadline !== undefined && Date.now() >= this.deadline) this.deadlinePassed = true;
    return this.deadlinePassed;
  }

  /** The group decided to stop without a local request: mark the signal so the embedder sees the request too. */
  peer(): void {
    if (this.requested()) return;
    this.fromPeer = true;
    if (this.signal !== undefined) {
      this.signal.requested = true;
      this.signal.reason ??= PEER_REASON;
    }
  }

  /** The reason of a stop the group decided on. */
  reason(): StopReason {
    if (this.fromPeer) return { kind: "peer" };
    if (this.signal?.requested === true) return { kind: "signal", detail: this.signal.reason ?? "request" };
    if (this.deadlinePassed && this.deadline !== undefined) return { kind: "deadline", deadline: this.deadline };
    return { kind: "peer" };
  }
}
