import assert from "node:assert/strict";
import { test } from "node:test";
import { parse } from "yaml";
import { crdObject, generatedFiles, structural } from "./gen-crds.js";

type Node = Record<string, unknown>;

function walk(node: unknown, path: string, visit: (n: Node, path: string) => void): void {
  if (typeof node !== "object" || node === null) return;
  if (Array.isArray(node)) {
    node.forEach((n, i) => {
      walk(n, `${path}[${i}]`, visit);
    });
    return;
  }
  const n = node as Node;
  visit(n, path);
  for (const [k, v] of Object.entries(n)) walk(v, `${path}.${k}`, visit);
}

for (const kind of ["Collection", "Plan", "PretrainRun"] as const) {
  test(`${kind} CRD is structural and documented`, () => {
    const crd = crdObject(kind) as {
      spec: {
        versions: { schema: { openAPIV3Schema: Node }; subresources: unknown; additionalPrinterColumns: unknown[] }[];
        names: { shortNames: string[]; categories: string[] };
      };
    };
    const v = crd.spec.versions[0]!;
    assert.deepEqual(v.subresources, { status: {} });
    assert.ok(v.additionalPrinterColumns.length >= 3);
    assert.ok(crd.spec.names.shortNames.length > 0);
    assert.deepEqual(crd.spec.names.categories, ["ssl3d"]);
    const spec = (v.schema.openAPIV3Schema.properties as Record<string, Node>).spec!;
    walk(spec, "spec", (n, path) => {
      assert.ok(!("$ref" in n) && !("anyOf" in n) && !("oneOf" in n), `${path}: not structural`);
      if (n.properties !== undefined)
        assert.ok(!("additionalProperties" in n), `${path}: properties with additionalProperties`);
      if ("type" in n || "x-kubernetes-int-or-string" in n)
        assert.ok(
          typeof n.description === "string" || path.endsWith(".items") || path.endsWith(".additionalProperties"),
          `${path}: no description for kubectl explain`,
        );
    });
  });
}

test("CEL rules are emitted for immutability, paths, environment names and GPUs per rank", () => {
  const text = [...generatedFiles()].map(([, t]) => t).join("\n");
  assert.match(text, /rule: self == oldSelf\n\s+message: planRef is immutable/);
  assert.match(text, /subPath must be relative and must not contain '\.\.'/);
  assert.match(text, /the variable would inject code into the runtime/);
  assert.match(text, /nprocPerNode must not exceed the nvidia.com\/gpu limit/);
  // RE2 (the API server's regular expressions) has no look-around
  assert.doesNotMatch(text, /pattern: .*\(\?[!=<]/);
  assert.match(text, /Plan spec is immutable/);
});

test("the Helm copy is the same CRD behind crds.enabled", () => {
  const files = generatedFiles();
  const plain = parse(files.get("crds/pretrainruns.ssl3d.io.yaml")!) as { metadata: Node };
  const helm = files.get("helm/ssl3d/templates/crds/pretrainruns.ssl3d.io.yaml")!;
  assert.ok(helm.startsWith("{{- if .Values.crds.enabled }}"));
  const inner = parse(helm.split("\n").slice(1, -2).join("\n")) as { metadata: Node };
  assert.deepEqual(
    { ...inner, metadata: { name: inner.metadata.name } },
    { ...plain, metadata: { name: plain.metadata.name } },
  );
});

test("structural() rejects what the API server rejects", () => {
  assert.throws(() => structural({ $ref: "#/x" }), /\$ref/);
  assert.throws(() => structural({ anyOf: [{ type: "string" }] }), /anyOf/);
  assert.deepEqual(structural({ type: "object", properties: {}, additionalProperties: {} }), {
    type: "object",
    "x-kubernetes-preserve-unknown-fields": true,
  });
});
