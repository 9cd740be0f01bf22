import assert from "node:assert/strict";
import { test } from "node:test";
import { parseKueueMode } from "./kueue-mode.js";

test("SSL3D_KUEUE: unset is auto, auto/true/false pass, anything else is an error naming the variable", () => {
  assert.equal(parseKueueMode(undefined), "auto");
  for (const v of ["auto", "true", "false"] as const) assert.equal(parseKueueMode(v), v);
  for (const v of ["yes", "", "TRUE", "1"])
    assert.throws(
      () => parseKueueMode(v),
      new RegExp(`^Error: SSL3D_KUEUE: expected auto, true or false, got "${v}"$`),
    );
});
