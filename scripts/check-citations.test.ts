/**
 * scripts/check-citations.sh: the repository cites nothing outside itself, and the check fails (naming file and line)
 * on each kind of outside citation it guards against.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const script = join(import.meta.dirname, "check-citations.sh");

function check(root?: string): { status: number | null; stderr: string } {
  const r = spawnSync("bash", root === undefined ? [script] : [script, root], { encoding: "utf8" });
  return { status: r.status, stderr: r.stderr };
}

test("the repository cites only upstream files and its own docs", () => {
  const r = check();
  assert.equal(r.status, 0, r.stderr);
});

test("each outside citation fails the check with file and line", () => {
  const root = mkdtempSync(join(tmpdir(), "ssl3d-citations-"));
  try {
    mkdirSync(join(root, "runtime", "src"), { recursive: true });
    mkdirSync(join(root, "docs"), { recursive: true });
    writeFileSync(
      join(root, "runtime", "src", "ok.ts"),
      "// nnssl `src/nnssl/data/raw_dataset.py`; the CRD spec is immutable\n",
    );
    writeFileSync(join(root, "README.md"), "See docs/training.md.\n");
    assert.equal(check(root).status, 0, "clean tree");
    const cases: [string, string][] = [
      ["runtime/src/a.ts", "/** Split (spec 4.2). */\n"],
      ["docs/b.md", "from /work/shared/reference/x.md\n"],
      ["README.md", "as nnssl-spec.md says\n"],
      ["docs/c.md", "the BRIEF contract\n"],
    ];
    for (const [file, text] of cases) {
      writeFileSync(join(root, file), `line one\n${text}`);
      const r = check(root);
      assert.equal(r.status, 1, file);
      assert.match(r.stderr, new RegExp(`${file.replace(/\./g, "\\.")}:2:`), file);
      writeFileSync(join(root, file), "line one\n");
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
