/**
 * docs/limits-and-safety.md lists every limit of runtime/src/config/limits.ts with its override, and every override
 * is honoured (a value given through the environment wins, a malformed one is a ConfigError naming the variable).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { LIMITS, limit, type LimitName } from "../../runtime/src/config/limits.js";
import { ConfigError } from "../../runtime/src/errors.js";
import { ROOT } from "./hostile-files.js";

test("every limit is documented with its environment variable", () => {
  const doc = readFileSync(join(ROOT, "docs", "limits-and-safety.md"), "utf8");
  for (const [name, spec] of Object.entries(LIMITS))
    assert.ok(doc.includes(`\`${spec.env}\``), `${name}: ${spec.env} missing from docs/limits-and-safety.md`);
});

test("every limit is overridable and validates its override", () => {
  for (const [name, spec] of Object.entries(LIMITS) as [LimitName, (typeof LIMITS)[LimitName]][]) {
    assert.ok(limit(name, {}) >= 1, name);
    assert.equal(limit(name, { [spec.env]: "12345" }), 12345, name);
    assert.throws(
      () => limit(name, { [spec.env]: "-1" }),
      (e: unknown) => e instanceof ConfigError && e.field === spec.env,
    );
  }
});
