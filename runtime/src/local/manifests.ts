/**
 * The Collection, Plan and PretrainRun manifests (`ssl3d.io/v1alpha1`) as the local runner reads them, validated
 * with the same zod schemas the CRDs are generated from (the contract module, api/v1alpha1): claim names, subPaths,
 * folder-like names and environment variables are held to the rules the API server applies, so `ssl3d run` and
 * `kubectl apply` accept and refuse the same manifests. Cluster-only fields (images, resources, scheduling, ...)
 * are validated and not used; a missing image is filled in, since no image is pulled locally.
 * Errors name the file, the document (`Kind/name`) and the field.
 */
import { parseAllDocuments } from "yaml";
import { z } from "zod";
import { CollectionSpecSchema } from "../../../api/v1alpha1/collection.js";
import type { PvcMount as ApiPvcMount } from "../../../api/v1alpha1/common.js";
import { PlanSpecSchema } from "../../../api/v1alpha1/plan.js";
import { PretrainRunSpecSchema } from "../../../api/v1alpha1/pretrain-run.js";
import { LIMITS, limit } from "../config/limits.js";
import { ConfigError, Ssl3dError } from "../errors.js";
import { readRegularFileSync } from "../io/regular-file.js";

export const API_VERSION = "ssl3d.io/v1alpha1";
/** Collection annotation honoured only by the local runner: generate the demo phantoms into the source first. */
export const LOCAL_DEMO_ANNOTATION = "ssl3d.io/local-demo";
/** Image recorded for manifests that name none (the local runner runs this checkout's `ssl3d`). */
const LOCAL_IMAGE = "local";

const Name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a lower-case DNS-1123 name")
  .max(63);
export type PvcMount = ApiPvcMount;
const Metadata = z.object({
  name: Name,
  namespace: z.string().optional(),
  uid: z.string().optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

function withLocalImage(spec: unknown, path: "image" | "preprocess" | "indexing"): unknown {
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) return spec;
  const o = spec as Record<string, unknown>;
  if (path === "image") return { image: LOCAL_IMAGE, ...o };
  const sub = o[path];
  if (sub === undefined && path === "indexing") return o;
  return { ...o, [path]: { image: LOCAL_IMAGE, ...(typeof sub === "object" && sub !== null ? sub : {}) } };
}
const CollectionSpec = z.preprocess((s) => withLocalImage(s, "indexing"), CollectionSpecSchema);
const PlanSpec = z.preprocess((s) => withLocalImage(s, "preprocess"), PlanSpecSchema);
const RunSpec = z.preprocess((s) => withLocalImage(s, "image"), PretrainRunSpecSchema);

export type CollectionSpec = z.output<typeof CollectionSpecSchema>;
export type PlanSpec = z.output<typeof PlanSpecSchema>;
export type PretrainRunSpec = z.output<typeof PretrainRunSpecSchema>;

export interface Manifest<K extends string, S> {
  readonly kind: K;
  readonly name: string;
  /** metadata.uid when the manifest carries one (the local runner otherwise keeps its own in the state folder). */
  readonly uid?: string | undefined;
  readonly annotations: Readonly<Record<string, string>>;
  readonly spec: S;
}
export type CollectionManifest = Manifest<"Collection", CollectionSpec>;
export type PlanManifest = Manifest<"Plan", PlanSpec>;
export type PretrainRunManifest = Manifest<"PretrainRun", PretrainRunSpec>;

export interface Manifests {
  readonly source: string;
  readonly collections: readonly CollectionManifest[];
  readonly plans: readonly PlanManifest[];
  readonly runs: readonly PretrainRunManifest[];
}

const SPECS = { Collection: CollectionSpec, Plan: PlanSpec, PretrainRun: RunSpec } as const;

function pathOf(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)).join("");
}

/** Parse and validate a multi-document YAML text; `source` names the file in errors. */
export function parseManifests(text: string, source: string): Manifests {
  const docs = parseAllDocuments(text);
  const collections: CollectionManifest[] = [];
  const plans: PlanManifest[] = [];
  const runs: PretrainRunManifest[] = [];
  docs.forEach((doc, i) => {
    const where = `document ${i + 1}`;
    if (doc.errors.length > 0)
      throw new ConfigError(`${where}: invalid YAML: ${doc.errors[0]!.message}`, { file: source });
    let obj: unknown;
    try {
      // the yaml library refuses alias expansion beyond its limit (a "billion laughs" document) with a ReferenceError
      obj = doc.toJS();
    } catch (err) {
      throw new ConfigError(`${where}: ${err instanceof Error ? err.message : String(err)}`, { file: source });
    }
    if (obj === null || obj === undefined) return;
    if (typeof obj !== "object" || Array.isArray(obj))
      throw new ConfigError(`${where} is not a mapping`, { file: source });
    const o = obj as Record<string, unknown>;
    const kind = o.kind;
    if (kind !== "Collection" && kind !== "Plan" && kind !== "PretrainRun") {
      throw new ConfigError(`${where}: kind must be Collection, Plan or PretrainRun, got ${JSON.stringify(kind)}`, {
        file: source,
        field: "kind",
      });
    }
    if (o.apiVersion !== API_VERSION)
      throw new ConfigError(
        `${where} (${kind}): apiVersion must be ${API_VERSION}, got ${JSON.stringify(o.apiVersion)}`,
        { file: source, field: "apiVersion" },
      );
    const meta = Metadata.safeParse(o.metadata);
    if (!meta.success) {
      const issue = meta.error.issues[0]!;
      throw new ConfigError(`${where} (${kind}): ${issue.message}`, {
        file: source,
        field: `metadata${issue.path.length > 0 ? "." : ""}${pathOf(issue.path)}`,
      });
    }
    const spec = SPECS[kind].safeParse(o.spec ?? {});
    if (!spec.success) {
      const issue = spec.error.issues[0]!;
      throw new ConfigError(`${kind}/${meta.data.name}: ${issue.message}`, {
        file: source,
        field: `spec${issue.path.length > 0 ? "." : ""}${pathOf(issue.path)}`,
      });
    }
    const base = { name: meta.data.name, uid: meta.data.uid, annotations: meta.data.annotations ?? {} };
    if (kind === "Collection") collections.push({ kind, ...base, spec: spec.data as CollectionSpec });
    else if (kind === "Plan") plans.push({ kind, ...base, spec: spec.data as PlanSpec });
    else runs.push({ kind, ...base, spec: spec.data as PretrainRunSpec });
  });
  const unique = (kind: string, names: string[]): void => {
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup !== undefined)
      throw new ConfigError(`two ${kind}s are named ${dup}`, { file: source, field: `${kind}/${dup}` });
  };
  unique(
    "Collection",
    collections.map((c) => c.name),
  );
  unique(
    "Plan",
    plans.map((p) => p.name),
  );
  unique(
    "PretrainRun",
    runs.map((r) => r.name),
  );
  for (const p of plans) {
    if (!collections.some((c) => c.name === p.spec.collectionRef.name)) {
      throw new ConfigError(`Plan/${p.name}: no Collection named ${p.spec.collectionRef.name} in this file`, {
        file: source,
        field: "spec.collectionRef.name",
      });
    }
  }
  for (const r of runs) {
    if (!plans.some((p) => p.name === r.spec.planRef.name)) {
      throw new ConfigError(`PretrainRun/${r.name}: no Plan named ${r.spec.planRef.name} in this file`, {
        file: source,
        field: "spec.planRef.name",
      });
    }
  }
  if (collections.length + plans.length + runs.length === 0)
    throw new ConfigError("no Collection, Plan or PretrainRun in the file", { file: source });
  return { source, collections, plans, runs };
}

export function readManifests(file: string): Manifests {
  let text: string;
  try {
    text = readRegularFileSync(file, {
      what: "manifests file",
      maxBytes: limit("documentBytes"),
      maxBytesEnv: LIMITS.documentBytes.env,
    }).toString("utf8");
  } catch (err) {
    if (err instanceof Ssl3dError) throw err;
    throw new ConfigError(`cannot read the manifests: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      file,
      cause: err,
    });
  }
  return parseManifests(text, file);
}
