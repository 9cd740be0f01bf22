/**
 * The headless-Chromium checks used on the run report can fail: console errors and uncaught exceptions are reported,
 * and a report page whose charts are empty is rejected (the real report passes in delivery/local-run.test.ts).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { renderPage } from "../helpers/chromium.js";
import { checkReportPage } from "../helpers/report-page.js";

test(
  "chromium client: console errors and uncaught exceptions are collected; evaluate and screenshot work",
  { timeout: 120_000 },
  async () => {
    const page = await renderPage(
      "data:text/html,<h1>hi</h1><script>console.error('boom'); missingFunction();</script>",
      "document.querySelector('h1').textContent",
    );
    assert.equal(page.value, "hi");
    assert.equal(page.errors.length, 2, page.errors.join("\n"));
    assert.match(page.errors[0]!, /boom/);
    assert.match(page.errors[1]!, /missingFunction is not defined/);
    assert.ok(page.screenshot.subarray(1, 4).toString() === "PNG");
  },
);

test("report check: a page with the report's sections but empty charts is rejected", { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "ssl3d-chromium-"));
  try {
    const file = join(dir, "report.html");
    const empty = `<figure class="chart"><svg width="800" height="300" xmlns="http://www.w3.org/2000/svg"></svg></figure>`;
    const sections = ["summary", "configuration", "checkpoints", "preview"]
      .map((s) => `<section id="${s}"><h2>${s}</h2></section>`)
      .join("");
    writeFileSync(
      file,
      `<!DOCTYPE html><html><head><title>ssl3d run report: x</title></head><body style="height:3000px">${sections}<section id="charts">${empty.repeat(3)}</section></body></html>`,
    );
    await assert.rejects(checkReportPage(file, { charts: 3, preview: false }), /chart 0 has no curves/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
