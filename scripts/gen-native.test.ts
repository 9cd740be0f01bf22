/**
 * The native kernel table (native/kernels.json) and what is generated from it: the C++ opcode enums and the
 * TypeScript table agree value by value, the checked-in files are current, malformed specs are refused, and the
 * registry builds exactly the kernels of the table from the family modules.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { BinaryOp, CompareOp, KERNEL_FAMILY, UnaryOp } from "../runtime/src/models/backend/native/kernels.generated.js";
import { nativeAddon, nativeKernels } from "../runtime/src/models/backend/native.js";
import { nativeSkipReason } from "../test/helpers/native.js";
import { opcodeTables, outputs, readSpec, renderHeader } from "./gen-native.js";

const repo = join(import.meta.dirname, "..");

test("the generated files are current (npm run generate)", () => {
  for (const { path, content } of outputs()) assert.equal(readFileSync(join(repo, path), "utf8"), content, path);
});

test("C++ and TypeScript opcodes have the same values, in table order", () => {
  const header = renderHeader(readSpec());
  for (const [name, table] of [
    ["binary_op", BinaryOp],
    ["compare_op", CompareOp],
    ["unary_op", UnaryOp],
  ] as const) {
    for (const [kernel, value] of Object.entries(table)) {
      assert.match(header, new RegExp(`namespace ${name} \\{[^}]*\\bk${kernel} = ${value},`), `${name}::k${kernel}`);
    }
    const count = new RegExp(`namespace ${name} \\{[^}]*kCount = (\\d+)`).exec(header);
    assert.equal(Number(count?.[1]), Object.keys(table).length, `${name}::kCount`);
  }
  assert.deepEqual([...opcodeTables(readSpec()).keys()], ["BinaryOp", "CompareOp", "UnaryOp"]);
});

test("malformed specs are refused with the field named", () => {
  const spec = (kernels: unknown[]): string => JSON.stringify({ $comment: "", kernels });
  const conv = { name: "Conv3D", family: "conv", addon: "conv3d" };
  assert.throws(() => readSpec(spec([conv, conv])), /kernel Conv3D is listed twice/);
  assert.throws(() => readSpec(spec([{ ...conv, family: "nope" }])), /native\/kernels\.json: kernels\.0\.family/);
  assert.throws(() => readSpec(spec([{ ...conv, extra: 1 }])), /kernels\.0/);
  assert.throws(
    () =>
      readSpec(
        spec([
          { name: "Add", family: "elementwise", addon: "binary", opcode: "BinaryOp" },
          { name: "Neg", family: "elementwise", addon: "unary", opcode: "BinaryOp" },
        ]),
      ),
    /opcode BinaryOp is used by addon functions binary and unary/,
  );
});

test(
  "the registry builds exactly the table's kernels, each from its family's module",
  { skip: nativeSkipReason(nativeAddon() !== null) },
  () => {
    const built = nativeKernels(nativeAddon()!)
      .map((k) => k.name)
      .sort();
    assert.deepEqual(built, Object.keys(KERNEL_FAMILY).sort());
  },
);
