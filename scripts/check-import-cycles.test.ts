/**
 * No import cycles in runtime/src: none between files, and none between its folders except the listed older ones
 * (planning <-> preprocessing is gone since the plans loader and the folder layout moved to config/). The checker
 * itself finds cycles in a small tree made for it.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { ALLOWED_FOLDER_CYCLES, findImportCycles, formatCycles, importSpecifiers } from "./check-import-cycles.js";

const repo = join(import.meta.dirname, "..");
const tmp = mkdtempSync(join(tmpdir(), "ssl3d-cycles-"));
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmp, "src-"));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), text);
  }
  return root;
}

test("runtime/src: no file import cycle, no folder cycle beyond the allowed ones, planning and preprocessing apart", () => {
  const r = findImportCycles(join(repo, "runtime", "src"));
  assert.deepEqual(formatCycles(r, ALLOWED_FOLDER_CYCLES), []);
  assert.deepEqual(r.files, []);
  for (const comp of r.folderComponents)
    assert.ok(!(comp.includes("planning") && comp.includes("preprocessing")), comp.join(", "));
});

test("the checker finds file and folder cycles, type-only and dynamic imports included", () => {
  const r = findImportCycles(
    tree({
      "a/x.ts": 'import { y } from "../b/y.js";\nexport const x = y;\n',
      "b/y.ts": 'import type { Z } from "../a/z.js";\nexport const y: Z = 1;\n',
      "a/z.ts": "export type Z = number;\n",
      "c/p.ts": 'export const p = () => import("./q.js");\n',
      "c/q.ts": 'export { p } from "./p.js";\n',
    }),
  );
  assert.deepEqual(r.files, [["c/p.ts", "c/q.ts", "c/p.ts"]]);
  assert.deepEqual(r.folderComponents, [["a", "b"]]);
  assert.deepEqual(formatCycles(r), [
    "file import cycle: c/p.ts -> c/q.ts -> c/p.ts",
    "folder import cycle: a -> b -> a (folders a, b)",
  ]);
  assert.deepEqual(
    formatCycles(r, [
      ["a", "b"],
      ["d", "e"],
    ]),
    [
      "file import cycle: c/p.ts -> c/q.ts -> c/p.ts",
      "allowed folder cycle d, e no longer exists: remove it from ALLOWED_FOLDER_CYCLES",
    ],
  );
});

test("a tree without cycles passes; package imports are not followed", () => {
  const r = findImportCycles(
    tree({
      "a/x.ts": 'import { z } from "zod";\nimport { y } from "../b/y.js";\nexport const x = [z, y];\n',
      "b/y.ts": "export const y = 1;\n",
    }),
  );
  assert.deepEqual(formatCycles(r), []);
  assert.deepEqual(
    importSpecifiers(
      "x.ts",
      'import a from "zod"; import { b } from "./b.js"; export * from "../c.js"; const d = import("./d.js");',
    ),
    ["./b.js", "../c.js", "./d.js"],
  );
});
