/** API group, version, label keys and names shared by the CRDs, the reconcilers and the shell. */
export const GROUP = "ssl3d.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Field manager for server-side apply and status patches; also the Events' reportingController. */
export const FIELD_MANAGER = "ssl3d-operator";
export const CATEGORY = "ssl3d";

/** Labels and annotations the operator puts on its children (all prefixed `ssl3d.io/`). */
export const LABELS = {
  managedBy: `${GROUP}/managed-by`,
  collection: `${GROUP}/collection`,
  plan: `${GROUP}/plan`,
  run: `${GROUP}/run`,
  attempt: `${GROUP}/attempt`,
  role: `${GROUP}/role`,
  /** Annotation with a hash of the desired child, so unchanged children are not re-applied. */
  specHash: `${GROUP}/spec-hash`,
} as const;
export const MANAGED_BY_VALUE = FIELD_MANAGER;

export interface KindInfo {
  readonly kind: "Collection" | "Plan" | "PretrainRun";
  readonly plural: string;
  readonly singular: string;
  readonly shortNames: readonly string[];
}
export const KINDS = {
  Collection: { kind: "Collection", plural: "collections", singular: "collection", shortNames: ["sslcol"] },
  // `plans` collides with plans.upgrade.cattle.io (system-upgrade-controller, shipped by k3s/Rancher): users of such
  // clusters must write `plans.ssl3d.io`; the short name `sslplan` is unambiguous everywhere.
  Plan: { kind: "Plan", plural: "plans", singular: "plan", shortNames: ["sslplan"] },
  PretrainRun: { kind: "PretrainRun", plural: "pretrainruns", singular: "pretrainrun", shortNames: ["ptr", "sslrun"] },
} as const satisfies Record<string, KindInfo>;
export type KindName = keyof typeof KINDS;
