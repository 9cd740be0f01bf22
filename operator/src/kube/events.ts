/** Records events.k8s.io/v1 Events about custom resources (best effort: a failed Event never fails a reconcile). */
import type { Logger } from "pino";
import { truncate } from "../../../api/v1alpha1/summary.js";
import type { CustomResource, EventSpec } from "../controllers/types.js";
import type { KubeClient } from "./client.js";

export class EventRecorder {
  private seq = 0;
  constructor(
    private readonly client: KubeClient,
    private readonly controller: string,
    private readonly instance: string,
    private readonly log: Logger,
  ) {}

  async record(obj: CustomResource & { apiVersion: string; kind: string }, e: EventSpec): Promise<void> {
    const now = new Date();
    const ns = obj.metadata.namespace ?? "default";
    const name = `${obj.metadata.name}.${now.getTime().toString(16)}${(this.seq++ % 4096).toString(16)}`;
    try {
      await this.client.create({
        apiVersion: "events.k8s.io/v1",
        kind: "Event",
        metadata: { name, namespace: ns },
        eventTime: now.toISOString().replace(/Z$/, "000Z"),
        reportingController: this.controller,
        reportingInstance: this.instance,
        action: e.action,
        reason: e.reason,
        note: truncate(e.note, 1024),
        type: e.type,
        regarding: {
          apiVersion: obj.apiVersion,
          kind: obj.kind,
          name: obj.metadata.name,
          namespace: ns,
          uid: obj.metadata.uid,
          resourceVersion: obj.metadata.resourceVersion,
        },
      });
    } catch (err) {
      this.log.warn(
        { err: err instanceof Error ? err.message : String(err), reason: e.reason },
        "Could not record an Event",
      );
    }
  }
}
