/**
 * Lease-based leader election on coordination.k8s.io/v1 (client-go's algorithm): acquire the Lease when it is free
 * or its holder has not renewed within leaseDuration (measured on our own clock since we last saw it change, so
 * clock skew between nodes does not matter), renew every retryPeriod, and give up leadership when renewal has
 * failed for renewDeadline. Releases the Lease on a graceful stop so a standby takes over at once.
 */
import type { Logger } from "pino";
import { httpStatus, type KubeClient } from "./client.js";

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

interface Lease {
  apiVersion: "coordination.k8s.io/v1";
  kind: "Lease";
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

function microTime(d: Date): string {
  return d.toISOString().replace(/Z$/, "000Z");
}

export class LeaderElector {
  private leading = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private observed: { holder: string; renew: string; at: number } | undefined;
  private lastRenew = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaderElectionOptions,
    private readonly log: Logger,
    private readonly callbacks: { onStartedLeading: () => void; onStoppedLeading: () => void },
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    this.tick();
  }

  private tick(): void {
    if (this.stopped) return;
    void this.tryAcquireOrRenew()
      .catch((err: unknown) => {
        this.log.warn(
          { err: err instanceof Error ? err.message : String(err), lease: this.opts.name },
          "Lease update failed",
        );
        return false;
      })
      .then((ok) => {
        if (this.stopped) return;
        if (this.leading && !ok && Date.now() - this.lastRenew > this.opts.renewDeadlineMs) {
          this.leading = false;
          this.log.error({ lease: this.opts.name }, "Lost leadership");
          this.callbacks.onStoppedLeading();
        }
        this.timer = setTimeout(() => {
          this.tick();
        }, this.opts.retryPeriodMs);
      });
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const now = new Date();
    const durationS = Math.ceil(this.opts.leaseDurationMs / 1000);
    const lease = await this.client.get<Lease>("coordination.k8s.io/v1", "Lease", namespace, name);
    if (lease === undefined) {
      await this.client.create({
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace },
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: durationS,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      });
      this.becomeLeader();
      return true;
    }
    const holder = lease.spec.holderIdentity ?? "";
    const renew = lease.spec.renewTime ?? "";
    if (this.observed === undefined || this.observed.holder !== holder || this.observed.renew !== renew) {
      this.observed = { holder, renew, at: Date.now() };
    }
    const expired =
      holder === "" || Date.now() > this.observed.at + (lease.spec.leaseDurationSeconds ?? durationS) * 1000;
    if (holder !== identity && !expired) {
      if (this.leading) {
        this.leading = false;
        this.callbacks.onStoppedLeading();
      }
      return false;
    }
    const spec = {
      ...lease.spec,
      holderIdentity: identity,
      leaseDurationSeconds: durationS,
      renewTime: microTime(now),
      ...(holder !== identity
        ? { acquireTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 }
        : {}),
    };
    try {
      await this.client.replace({ ...lease, spec });
    } catch (err) {
      if (httpStatus(err) === 409) return false; // someone else won the race
      throw err;
    }
    this.becomeLeader();
    return true;
  }

  private becomeLeader(): void {
    this.lastRenew = Date.now();
    if (!this.leading) {
      this.leading = true;
      this.log.info({ lease: this.opts.name, identity: this.opts.identity }, "Became leader");
      this.callbacks.onStartedLeading();
    }
  }

  /** Stops renewing; when leading, releases the Lease (empty holder) so a standby takes over immediately. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.client.get<Lease>(
        "coordination.k8s.io/v1",
        "Lease",
        this.opts.namespace,
        this.opts.name,
      );
      if (lease?.spec.holderIdentity === this.opts.identity) {
        await this.client.replace({
          ...lease,
          spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1, renewTime: microTime(new Date()) },
        });
      }
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "Could not release the Lease");
    }
  }
}
