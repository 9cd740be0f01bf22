/**
 * Checks of an `ssl3d report` page rendered by headless Chromium (test/helpers/chromium.ts): no console errors,
 * every chart an SVG with drawn paths and text, every preview image decoded, and the screenshot has content where the
 * charts and the preview grid are (pixel variance, share of non-white pixels).
 */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { PNG } from "pngjs";
import { renderPage, type RenderedPage } from "./chromium.js";

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}
interface PageFacts {
  sections: string[];
  charts: (Box & { paths: number; texts: number })[];
  images: (Box & { complete: boolean; naturalWidth: number })[];
  grid: Box | null;
  title: string;
}

const FACTS = `(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height }; };
  const grid = document.querySelector("#preview table.grid");
  return {
    title: document.title,
    sections: [...document.querySelectorAll("section")].map((s) => s.id),
    charts: [...document.querySelectorAll("figure.chart svg")].map((svg) => ({ ...box(svg), paths: svg.querySelectorAll("path").length, texts: svg.querySelectorAll("text").length })),
    images: [...document.images].map((i) => ({ ...box(i), complete: i.complete, naturalWidth: i.naturalWidth })),
    grid: grid === null ? null : box(grid),
  };
})()`;

/** Luminance standard deviation and share of non-white pixels of a region of a PNG. */
export function regionStats(png: PNG, b: Box): { std: number; inked: number } {
  let n = 0,
    sum = 0,
    sq = 0,
    inked = 0;
  const x0 = Math.max(0, Math.floor(b.x)),
    y0 = Math.max(0, Math.floor(b.y));
  const x1 = Math.min(png.width, Math.ceil(b.x + b.width)),
    y1 = Math.min(png.height, Math.ceil(b.y + b.height));
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) {
      const i = (y * png.width + x) * 4;
      const l = 0.299 * png.data[i]! + 0.587 * png.data[i + 1]! + 0.114 * png.data[i + 2]!;
      n++;
      sum += l;
      sq += l * l;
      if (l < 235) inked++;
    }
  if (n === 0) return { std: 0, inked: 0 };
  const mean = sum / n;
  return { std: Math.sqrt(Math.max(0, sq / n - mean * mean)), inked: inked / n };
}

/** Render the report in Chromium and assert it shows what it should; returns the rendering (screenshot for docs). */
export async function checkReportPage(
  file: string,
  expect: { charts: number; preview: boolean },
): Promise<RenderedPage> {
  const page = await renderPage(pathToFileURL(file).href, FACTS);
  assert.deepEqual(page.errors, [], "console errors while loading the report");
  const f = page.value as PageFacts;
  assert.match(f.title, /ssl3d run report/);
  for (const s of ["summary", "configuration", "charts", "checkpoints", "preview"])
    assert.ok(f.sections.includes(s), `section ${s} missing (${f.sections.join(", ")})`);
  assert.equal(f.charts.length, expect.charts, "number of charts");
  const png = PNG.sync.read(page.screenshot);
  assert.ok(png.height >= 1500, `page too short: ${png.height}px`);
  for (const [i, c] of f.charts.entries()) {
    assert.ok(c.width > 400 && c.height > 200, `chart ${i} not laid out: ${JSON.stringify(c)}`);
    assert.ok(c.paths >= 4 && c.texts >= 8, `chart ${i} has no curves/axes: ${c.paths} paths, ${c.texts} texts`);
    const st = regionStats(png, c);
    assert.ok(
      st.std > 12 && st.inked > 0.01 && st.inked < 0.6,
      `chart ${i} looks blank in the screenshot: ${JSON.stringify(st)}`,
    );
  }
  if (expect.preview) {
    assert.ok(f.grid !== null, "no preview grid");
    assert.ok(f.images.length >= 12, `too few preview slices: ${f.images.length}`);
    for (const im of f.images)
      assert.ok(
        im.complete && im.naturalWidth > 0 && im.width > 20,
        `a preview image did not decode: ${JSON.stringify(im)}`,
      );
    const st = regionStats(png, f.grid);
    assert.ok(st.std > 25 && st.inked > 0.2, `preview grid looks blank: ${JSON.stringify(st)}`);
  }
  // nothing of the page is blank overall
  assert.ok(regionStats(png, { x: 0, y: 0, width: png.width, height: png.height }).std > 10);
  return page;
}
