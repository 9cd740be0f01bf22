/**
 * The Collection, Plan and PretrainRun manifests (`ssl3d.io/v1alpha1`) as the local runner reads them. The
 * operator's zod schemas (operator/src/api/v1alpha1) are the source of truth and become the CRDs; the runtime may
 * not import the operator, so this module validates structurally the subset of fields a local run uses and
 * ignores cluster-only fields (images, resources, scheduling, ...). See docs/decisions/0007-local-runner.md.
 * Errors name the file, the document (`Kind/name`) and the field.
 */
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.js";

export const API_VERSION = "ssl3d.io/v1alpha1";
/** Collection annotation honoured only by the local runner: generate the demo phantoms into the source first. */
export const LOCAL_DEMO_ANNOTATION = "ssl3d.io/local-demo";

const Name = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a lower-case DNS-1123 name").max(63);
const Pvc = z.object({
  claimName: z.string().min(1),
  subPath: z.string().regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$)).*$/, "a relative path without '..'").optional(),
  readOnly: z.boolean().optional(),
});
export type PvcMount = z.infer<typeof Pvc>;
const Ref = z.object({ name: Name });
const Metadata = z.object({ name: Name, namespace: z.string().optional(), annotations: z.record(z.string(), z.string()).optional() });

const CollectionSpec = z.object({
  source: z
    .object({ pvc: Pvc.optional(), uri: z.string().optional() })
    .refine((s) => (s.pvc === undefined) !== (s.uri === undefined), "exactly one of source.pvc and source.uri must be set"),
  dataset: z.string().regex(/^(\d{1,3}|Dataset\d{3}_[A-Za-z0-9_-]+)$/, "a dataset ID (e.g. 990) or DatasetNNN_Name"),
});
const PlanSpec = z.object({
  collectionRef: Ref,
  configurations: z.array(z.string().min(1)).optional(),
  plansName: z.string().min(1).optional(),
  numProcesses: z.number().int().min(1).optional(),
  extraArgs: z.array(z.string()).optional(),
  output: z.object({ pvc: Pvc }),
});
const RunSpec = z.object({
  planRef: Ref,
  command: z.array(z.string()).optional(),
  env: z.array(z.object({ name: z.string().min(1), value: z.string().optional() })).optional(),
  training: z
    .object({
      trainer: z.string().min(1).default("BaseMAETrainer"),
      configuration: z.string().min(1).optional(),
      epochs: z.number().int().min(1).optional(),
      modalities: z.array(z.string().regex(/^[^,\s]+$/, "a modality name without commas or spaces")).min(1).optional(),
      args: z.array(z.string()).optional(),
    })
    .prefault({}),
  numNodes: z.number().int().min(1).default(1),
  nprocPerNode: z.number().int().min(1).default(1),
  storage: z.object({ data: Pvc.optional(), checkpoints: Pvc }),
  runPolicy: z
    .object({ maxRestarts: z.number().int().min(0).default(3), resume: z.enum(["Latest", "None"]).default("Latest") })
    .prefault({}),
  metrics: z.object({ port: z.number().int().min(0).max(65535).default(9090) }).prefault({}),
});

export type CollectionSpec = z.infer<typeof CollectionSpec>;
export type PlanSpec = z.infer<typeof PlanSpec>;
export type PretrainRunSpec = z.infer<typeof RunSpec>;

export interface Manifest<K extends string, S> {
  readonly kind: K;
  readonly name: string;
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
    if (doc.errors.length > 0) throw new ConfigError(`${where}: invalid YAML: ${doc.errors[0]!.message}`, { file: source });
    let obj: unknown;
    try {
      // the yaml library refuses alias expansion beyond its limit (a "billion laughs" document) with a ReferenceError
      obj = doc.toJS();
    } catch (err) {
      throw new ConfigError(`${where}: ${err instanceof Error ? err.message : String(err)}`, { file: source });
    }
    if (obj === null || obj === undefined) return;
    if (typeof obj !== "object" || Array.isArray(obj)) throw new ConfigError(`${where} is not a mapping`, { file: source });
    const o = obj as Record<string, unknown>;
    const kind = o.kind;
    if (kind !== "Collection" && kind !== "Plan" && kind !== "PretrainRun") {
      throw new ConfigError(`${where}: kind must be Collection, Plan or PretrainRun, got ${JSON.stringify(kind)}`, { file: source, field: "kind" });
    }
    if (o.apiVersion !== API_VERSION) throw new ConfigError(`${where} (${kind}): apiVersion must be ${API_VERSION}, got ${JSON.stringify(o.apiVersion)}`, { file: source, field: "apiVersion" });
    const meta = Metadata.safeParse(o.metadata);
    if (!meta.success) {
      const issue = meta.error.issues[0]!;
      throw new ConfigError(`${where} (${kind}): ${issue.message}`, { file: source, field: `metadata${issue.path.length > 0 ? "." : ""}${pathOf(issue.path)}` });
    }
    const spec = SPECS[kind].safeParse(o.spec ?? {});
    if (!spec.success) {
      const issue = spec.error.issues[0]!;
      throw new ConfigError(`${kind}/${meta.data.name}: ${issue.message}`, { file: source, field: `spec${issue.path.length > 0 ? "." : ""}${pathOf(issue.path)}` });
    }
    const base = { name: meta.data.name, annotations: meta.data.annotations ?? {} };
    if (kind === "Collection") collections.push({ kind, ...base, spec: spec.data as CollectionSpec });
    else if (kind === "Plan") plans.push({ kind, ...base, spec: spec.data as PlanSpec });
    else runs.push({ kind, ...base, spec: spec.data as PretrainRunSpec });
  });
  const unique = (kind: string, names: string[]): void => {
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup !== undefined) throw new ConfigError(`two ${kind}s are named ${dup}`, { file: source, field: `${kind}/${dup}` });
  };
  unique("Collection", collections.map((c) => c.name));
  unique("Plan", plans.map((p) => p.name));
  unique("PretrainRun", runs.map((r) => r.name));
  for (const p of plans) {
    if (!collections.some((c) => c.name === p.spec.collectionRef.name)) {
      throw new ConfigError(`Plan/${p.name}: no Collection named ${p.spec.collectionRef.name} in this file`, { file: source, field: "spec.collectionRef.name" });
    }
  }
  for (const r of runs) {
    if (!plans.some((p) => p.name === r.spec.planRef.name)) {
      throw new ConfigError(`PretrainRun/${r.name}: no Plan named ${r.spec.planRef.name} in this file`, { file: source, field: "spec.planRef.name" });
    }
  }
  if (collections.length + plans.length + runs.length === 0) throw new ConfigError("no Collection, Plan or PretrainRun in the file", { file: source });
  return { source, collections, plans, runs };
}

export function readManifests(file: string): Manifests {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read the manifests: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { file, cause: err });
  }
  return parseManifests(text, file);
}
