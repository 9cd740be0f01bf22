import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { assertInside, assertInsideReal, checkSafeName, childPath, unsafeNameReason } from "./safe-path.js";

test("unsafeNameReason: plain names pass, separators, dot folders, control characters and long names do not", () => {
  for (const ok of ["sub-01_T1w.nii.gz", "ses-1", "ds000001", "a..b", ".hidden", "ü-名前", "x".repeat(200)])
    assert.equal(unsafeNameReason(ok), undefined, ok);
  for (const bad of [
    "",
    ".",
    "..",
    "../x",
    "a/b",
    "a\\b",
    "nul\u0000",
    "tab\t",
    "del\u007f",
    "x".repeat(201),
    "é".repeat(101),
  ])
    assert.notEqual(unsafeNameReason(bad), undefined, JSON.stringify(bad));
});

test("checkSafeName: a ConfigError naming the file and field", () => {
  assert.throws(
    () => checkSafeName("../x", "image name", { file: "/d/pretrain_data.json", field: "images[0].name" }),
    (e: unknown) =>
      e instanceof ConfigError && e.message.startsWith("/d/pretrain_data.json: images[0].name: image name"),
  );
});

test("assertInside / childPath: lexical containment", () => {
  assert.equal(assertInside("/r", "/r/a/b"), "/r/a/b");
  assert.equal(assertInside("/r", "a/b"), "/r/a/b");
  assert.equal(assertInside("/r", "/r"), "/r");
  for (const bad of ["/r/../x", "/x", "/rr/a", "a/../../x"])
    assert.throws(() => assertInside("/r", bad), /outside its root/, bad);
  assert.equal(childPath("/r", ["a", "b.json"]), "/r/a/b.json");
  assert.throws(() => childPath("/r", ["a", "../b"]), ConfigError);
});

test("assertInsideReal: a symlinked folder below the root that leads outside is refused; one at the root is followed", () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-safe-path-"));
  try {
    const root = join(dir, "root");
    const outside = join(dir, "outside");
    mkdirSync(join(root, "real"), { recursive: true });
    mkdirSync(outside);
    symlinkSync(outside, join(root, "link"));
    assert.equal(assertInsideReal(root, join(root, "real", "new", "f.json")), join(root, "real", "new", "f.json"));
    assert.throws(() => assertInsideReal(root, join(root, "link", "f.json")), /symbolic link/);
    assert.throws(() => assertInsideReal(root, join(root, "link", "new", "f.json")), /symbolic link/);
    // the final component is not resolved: renaming over a link replaces the link
    assert.equal(assertInsideReal(root, join(root, "link")), join(root, "link"));
    // the root itself may be a link (a dataset folder on another disk)
    symlinkSync(root, join(dir, "root-link"));
    assert.equal(
      assertInsideReal(join(dir, "root-link"), join(dir, "root-link", "real", "f")),
      join(dir, "root-link", "real", "f"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
