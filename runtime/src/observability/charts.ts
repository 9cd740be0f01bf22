/**
 * Line charts drawn with Apache ECharts' server-side SVG renderer (no DOM, no canvas) and, for PNG files,
 * rasterised by resvg with the DejaVu Sans font shipped in the `dejavu-fonts-ttf` npm package (ADR 0054): the
 * same pictures on every machine, nothing installed beyond npm. `progress.png` (progress-png.ts) and the run report
 * (report/) both draw through here.
 */
import { createRequire } from "node:module";
import { Resvg } from "@resvg/resvg-js";
import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TitleComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";

echarts.use([LineChart, GridComponent, LegendComponent, TitleComponent, SVGRenderer]);

export const FONT_FAMILY = "DejaVu Sans";
const FONT_FILE = createRequire(import.meta.url).resolve("dejavu-fonts-ttf/ttf/DejaVuSans.ttf");

/** Series colours (matplotlib's tab10, as upstream's plots): train blue, validation red, learning rate green, time purple. */
export const COLORS = {
  train: "#1f77b4",
  val: "#d62728",
  lr: "#2ca02c",
  time: "#9467bd",
  throughput: "#ff7f0e",
  step: "#aec7e8",
} as const;

/** One curve: points [x, y] with y null for a gap. */
export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number | null])[];
  readonly width?: number;
  /** Draw markers at the points (few points) — default: when there are at most 60. */
  readonly symbols?: boolean;
}

export interface Panel {
  readonly yName: string;
  readonly series: readonly Series[];
  /** Log scale on y (learning rates spanning decades); values ≤ 0 become gaps. */
  readonly logY?: boolean;
}

export interface ChartSpec {
  readonly title: string;
  readonly subtitle?: string;
  readonly xName: string;
  readonly panels: readonly Panel[];
  readonly width: number;
  /** Height of one panel's plot area in pixels. */
  readonly panelHeight: number;
}

/** Tick labels short enough for a narrow axis: 0.00123 → 1.23e-3, 1234.5 → 1234.5. */
export function formatTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(6)));
  const [m, e] = v.toExponential(2).split("e");
  return `${String(Number(m))}e${e!.replace("+", "")}`;
}

const TOP = 78;
const GAP = 62;

function seriesOption(s: Series, i: number, logY: boolean): Record<string, unknown> {
  const data = s.points.map(([x, y]) => [x, y === null || !Number.isFinite(y) || (logY && y <= 0) ? null : y]);
  return {
    type: "line",
    name: s.name,
    xAxisIndex: i,
    yAxisIndex: i,
    data,
    color: s.color,
    connectNulls: false,
    showSymbol: s.symbols ?? s.points.length <= 60,
    symbolSize: 6,
    lineStyle: { width: s.width ?? 2.5 },
    animation: false,
  };
}

/** The ECharts option of a chart: panels stacked vertically, sharing the x quantity, one legend, a title. */
export function chartOption(spec: ChartSpec): Record<string, unknown> {
  const axisText = { fontFamily: FONT_FAMILY, fontSize: 13, color: "#333" };
  return {
    backgroundColor: "#ffffff",
    animation: false,
    textStyle: { fontFamily: FONT_FAMILY },
    title: {
      text: spec.title,
      subtext: spec.subtitle ?? "",
      left: "center",
      top: 6,
      textStyle: { fontFamily: FONT_FAMILY, fontSize: 17 },
      subtextStyle: { fontFamily: FONT_FAMILY, fontSize: 12 },
    },
    legend: {
      top: 50,
      left: "center",
      itemGap: 34,
      textStyle: axisText,
      data: spec.panels.flatMap((p) => p.series.map((s) => s.name)),
    },
    grid: spec.panels.map((_, i) => ({
      left: 92,
      right: 28,
      top: TOP + i * (spec.panelHeight + GAP),
      height: spec.panelHeight,
    })),
    xAxis: spec.panels.map((_, i) => ({
      type: "value",
      gridIndex: i,
      min: 0,
      minInterval: 1,
      name: spec.xName,
      nameLocation: "middle",
      nameGap: 24,
      nameTextStyle: axisText,
      axisLabel: { ...axisText, fontSize: 11 },
      splitLine: { show: true, lineStyle: { color: "#eee" } },
    })),
    yAxis: spec.panels.map((p, i) => ({
      type: p.logY === true ? "log" : "value",
      gridIndex: i,
      scale: true,
      name: p.yName,
      nameLocation: "middle",
      nameGap: 70,
      nameTextStyle: axisText,
      axisLabel: { ...axisText, fontSize: 11, formatter: formatTick },
      axisLine: { show: true },
      axisTick: { show: true },
      splitLine: { show: true, lineStyle: { color: "#eee" } },
    })),
    series: spec.panels.flatMap((p, i) => p.series.map((s) => seriesOption(s, i, p.logY === true))),
  };
}

/** Overall pixel height of a chart. */
export function chartHeight(spec: Pick<ChartSpec, "panels" | "panelHeight">): number {
  return TOP + spec.panels.length * (spec.panelHeight + GAP) - 14;
}

/** The chart as an SVG document (ECharts SSR). */
export function renderChartSvg(spec: ChartSpec): string {
  const chart = echarts.init(null, null, { renderer: "svg", ssr: true, width: spec.width, height: chartHeight(spec) });
  try {
    chart.setOption(chartOption(spec));
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}

/** Rasterise an SVG document to PNG with the bundled DejaVu Sans (no system fonts: identical output everywhere). */
export function svgToPng(svg: string): Buffer {
  const r = new Resvg(svg, {
    font: {
      fontFiles: [FONT_FILE],
      loadSystemFonts: false,
      defaultFontFamily: FONT_FAMILY,
      sansSerifFamily: FONT_FAMILY,
    },
    background: "#ffffff",
  });
  return r.render().asPng();
}
