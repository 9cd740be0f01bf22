/** The three kinds of ssl3d.io/v1alpha1 and what the CRD generator needs about each. */
import { collectionCrd } from "./collection.js";
import { KINDS, type KindName } from "./group.js";
import { planCrd } from "./plan.js";
import { pretrainRunCrd } from "./pretrain-run.js";

export * from "./group.js";
export * from "./reasons.js";
export const CRDS = {
  Collection: collectionCrd,
  Plan: planCrd,
  PretrainRun: pretrainRunCrd,
} as const satisfies Record<KindName, unknown>;
export { KINDS };
