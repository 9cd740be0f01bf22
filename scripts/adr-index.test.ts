/**
 * docs/decisions (ADR 0001): every ADR has a status line under its title and no "Update"/"Addendum" sections (a
 * changed decision is a new ADR that supersedes it), and docs/decisions/README.md lists every ADR.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const dir = join(import.meta.dirname, "..", "docs", "decisions");
const adrs = readdirSync(dir)
  .filter((f) => /^\d{4}-.*\.md$/.test(f))
  .sort();

test("every ADR has a status line and no Update/Addendum sections", () => {
  assert.ok(adrs.length > 0);
  for (const f of adrs) {
    const lines = readFileSync(join(dir, f), "utf8").split("\n");
    assert.match(lines[0] ?? "", /^# \d{4}[.:] /, `${f}: title`);
    assert.ok(
      lines.slice(1, 6).some((l) => /^Status: (accepted|superseded)/.test(l)),
      `${f}: no "Status:" line under the title`,
    );
    for (const [i, l] of lines.entries())
      assert.doesNotMatch(l, /^#+ .*\b(Update|Addendum)\b/i, `${f}:${i + 1}: supersede with a new ADR instead`);
  }
});

test("the index lists every ADR, and a superseded ADR names an ADR that exists", () => {
  const index = readFileSync(join(dir, "README.md"), "utf8");
  for (const f of adrs) assert.ok(index.includes(`(${f})`), `docs/decisions/README.md does not list ${f}`);
  for (const f of adrs) {
    const status =
      readFileSync(join(dir, f), "utf8")
        .split("\n")
        .find((l) => l.startsWith("Status:")) ?? "";
    for (const m of status.matchAll(/\[(\d{4})\]\((\d{4}-[^)]+\.md)\)/g))
      assert.ok(adrs.includes(m[2]!), `${f}: status links ${m[2]}`);
  }
});
