/**
 * `ssl3d run -f MANIFEST` end to end on hostile manifests: exit code 2, one line on stderr naming the file and the
 * field, and nothing written (no state directory, no results). The rules are the CRD's (api/v1alpha1, one
 * definition); test/adversarial/manifests.test.ts checks each rule against the parser and the generated CRD.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");
const BIN = join(ROOT, "bin", "ssl3d.mjs");
const VALID = readFileSync(join(ROOT, "examples", "laptop.yaml"), "utf8");
const CKPT = "checkpoints: {claimName: ssl3d-results}";

const CASES: [string, string, string][] = [
  [
    "code-injecting env",
    VALID.replace("  numNodes: 1", '  env: [{name: LD_PRELOAD, value: "/tmp/x.so"}]\n  numNodes: 1'),
    "spec.env[0].name",
  ],
  [
    "checkpoint subPath escaping its volume",
    VALID.replace(CKPT, "checkpoints: {claimName: ssl3d-results, subPath: runs/../../..}"),
    "spec.storage.checkpoints.subPath",
  ],
  [
    "claimName that is a path",
    VALID.replace(CKPT, "checkpoints: {claimName: ../../etc}"),
    "spec.storage.checkpoints.claimName",
  ],
];

for (const [name, text, field] of CASES) {
  test(`ssl3d run -f refuses a manifest with a ${name}: exit 2, one line naming file and field, nothing written`, () => {
    assert.notEqual(text, VALID, "the case changed the manifest");
    const dir = mkdtempSync(join(tmpdir(), "ssl3d-hostile-"));
    try {
      writeFileSync(join(dir, "hostile.yaml"), text);
      const r = spawnSync(process.execPath, [BIN, "run", "-f", "hostile.yaml", "--state-dir", join(dir, "state")], {
        cwd: dir,
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(r.status, 2, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0]!.includes("hostile.yaml") && lines[0]!.includes(field), lines[0]);
      assert.deepEqual(readdirSync(dir), ["hostile.yaml"], "nothing written");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
