/**
 * The run report as one self-contained HTML page: inline CSS, charts as inline SVG (ECharts server-side rendering,
 * observability/charts.ts), preview slices as PNG data URIs; no script, no external resource.
 */
import { basename } from "node:path";
import { COLORS, renderChartSvg, type ChartSpec, type Series } from "../observability/charts.js";
import type { PreviewGrid } from "./preview.js";
import type { CheckpointEntry, EpochLine, RunFolder } from "./run-folder.js";

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

const fmtNum = (v: number | null | undefined, digits = 4): string =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : Number(v.toPrecision(digits)).toString();
const fmtBytes = (b: number): string =>
  b >= 1 << 30
    ? `${(b / (1 << 30)).toFixed(2)} GiB`
    : b >= 1 << 20
      ? `${(b / (1 << 20)).toFixed(1)} MiB`
      : `${(b / 1024).toFixed(1)} KiB`;
const fmtSeconds = (s: number): string =>
  s >= 3600 ? `${(s / 3600).toFixed(2)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`;

function table(rows: readonly (readonly [string, string])[]): string {
  return `<table class="kv">${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join("")}</table>`;
}

/** Per-epoch series: from the newest checkpoint's logging lists when present (the loop's own record), else the JSONL log. */
export interface EpochSeries {
  readonly train: (number | null)[];
  readonly val: (number | null)[];
  readonly lr: number[];
  readonly seconds: (number | null)[];
}

export function epochSeries(run: RunFolder): EpochSeries {
  const ck = run.checkpoints[0]?.meta.logging;
  if (ck !== undefined && ck.train_losses.length >= run.epochs.length) {
    return {
      train: ck.train_losses,
      val: ck.val_losses,
      lr: ck.lrs,
      seconds: ck.epoch_end_timestamps.map((e, i) =>
        ck.epoch_start_timestamps[i] === undefined ? null : e - ck.epoch_start_timestamps[i],
      ),
    };
  }
  return {
    train: run.epochs.map((e) => e.train_loss),
    val: run.epochs.map((e) => e.val_loss),
    lr: run.epochs.map((e) => e.lr),
    seconds: run.epochs.map((e) => e.epoch_time_s),
  };
}

/** Step losses at fractional epochs (step i of epoch e at e + (i + 0.5) / n). */
function stepPoints(epochs: readonly EpochLine[]): [number, number | null][] {
  return epochs.flatMap((e) =>
    (e.step_losses ?? []).map((l, i, all) => [e.epoch + (i + 0.5) / all.length, l] as [number, number | null]),
  );
}

export function samplesPerEpoch(run: RunFolder): number | undefined {
  const i = run.info;
  return i === undefined ? undefined : i.iters_per_epoch * i.batch_size;
}

export function chartSpecs(run: RunFolder, s: EpochSeries): ChartSpec[] {
  const ep = <T extends number | null>(vs: readonly T[]) => vs.map((v, i) => [i, v] as const);
  // x is training progress in epochs: epoch e spans [e, e + 1); its steps lie inside, its mean in the middle,
  // its validation at the end
  const steps = stepPoints(run.epochs);
  const at = <T extends number | null>(vs: readonly T[], dx: number) => vs.map((v, i) => [i + dx, v] as const);
  const lossSeries: Series[] = [
    ...(steps.length > 0
      ? [{ name: "train loss per step", color: COLORS.step, points: steps, width: 1, symbols: false }]
      : []),
    { name: "train loss (epoch mean)", color: COLORS.train, points: at(s.train, 0.5) },
    { name: "validation loss (end of epoch)", color: COLORS.val, points: at(s.val, 1) },
  ];
  const perEpoch = samplesPerEpoch(run);
  const throughput = s.seconds.map(
    (t, i) => [i, t === null || t <= 0 || perEpoch === undefined ? null : perEpoch / t] as const,
  );
  return [
    {
      title: "Loss",
      subtitle: "epoch e spans [e, e + 1): step losses inside it, the epoch mean in its middle, validation at its end",
      xName: "training progress (epochs)",
      width: 860,
      panelHeight: 300,
      panels: [{ yName: "loss", series: lossSeries }],
    },
    {
      title: "Learning rate",
      xName: "epoch",
      width: 860,
      panelHeight: 200,
      panels: [{ yName: "learning rate", series: [{ name: "learning rate", color: COLORS.lr, points: ep(s.lr) }] }],
    },
    {
      title: "Epoch time and throughput",
      subtitle: "wall time of each epoch (training steps and validation)",
      xName: "epoch",
      width: 860,
      panelHeight: 200,
      panels: [
        { yName: "epoch time (s)", series: [{ name: "epoch time", color: COLORS.time, points: ep(s.seconds) }] },
        ...(perEpoch === undefined
          ? []
          : [
              {
                yName: "training samples / s",
                series: [{ name: "samples per second", color: COLORS.throughput, points: throughput }],
              },
            ]),
      ],
    },
  ];
}

function configurationSection(run: RunFolder): string {
  const i = run.info;
  const meta = run.checkpoints[0]?.meta;
  const o = (meta?.init_args.trainer_options ?? {}) as Record<string, unknown>;
  const opt = o.optimizer as Record<string, unknown> | undefined;
  const arg = (k: string): string => (typeof meta?.init_args[k] === "string" ? meta.init_args[k] : "?");
  const cfgName = i?.configuration ?? arg("configuration_name");
  const cfg = ((run.plans?.configurations ?? {}) as Record<string, Record<string, unknown>>)[cfgName] ?? {};
  const j = (v: unknown) => (v === undefined ? "–" : typeof v === "string" ? v : JSON.stringify(v));
  const training: [string, string][] = [
    ["trainer", `${i?.trainer ?? meta?.trainer_name ?? "?"}${i === undefined ? "" : ` (${i.trainer_key})`}`],
    ["method", j(i?.method ?? o.method)],
    ["method options", j(o.methodOptions)],
    [
      "architecture",
      i === undefined ? j(o.architecture) : `${i.architecture}, ${i.parameters.toLocaleString("en-US")} parameters`,
    ],
    [
      "patch size",
      i === undefined
        ? j(o.patchSize)
        : `${i.patch_size.join("×")}${i.network_patch_size.join() !== i.patch_size.join() ? ` (network input ${i.network_patch_size.join("×")})` : ""}`,
    ],
    [
      "batch size",
      i === undefined ? j(o.batchSize) : `${i.batch_size}${i.world_size > 1 ? ` over ${i.world_size} ranks` : ""}`,
    ],
    [
      "epochs × iterations",
      i === undefined
        ? `${j(o.numEpochs)} × ${j(o.itersPerEpoch)}`
        : `${i.epochs} × ${i.iters_per_epoch} (validation: ${i.val_iters} per epoch)`,
    ],
    ["optimizer", opt === undefined ? "–" : `${j(opt.kind)}, lr ${j(opt.lr)}, weight decay ${j(opt.weightDecay)}`],
    ["schedule", j(o.schedule)],
    ["gradient clipping", j(o.gradClip)],
    ["seed", j(o.seed)],
    ["backend", j(meta?.init_args.backend)],
  ];
  const plan: [string, string][] = [
    ["dataset", i?.dataset ?? arg("dataset_name")],
    ["plans / configuration", `${i?.plans ?? arg("plans_name")} / ${cfgName}`],
    ["spacing", j(cfg.spacing)],
    ["normalization", j(cfg.normalization_schemes)],
    ["images (train / validation)", i === undefined ? "–" : `${i.train_images} / ${i.val_images}`],
    ["subjects (train / validation)", i === undefined ? "–" : `${i.train_subjects} / ${i.val_subjects}`],
    ["modalities", i?.modalities === null || i?.modalities === undefined ? "all" : i.modalities.join(", ")],
    ["results folder", run.baseDir],
    ["checkpoints", run.checkpointDir],
  ];
  return `<section id="configuration"><h2>Configuration</h2><div class="cols"><div><h3>Training</h3>${table(training)}</div><div><h3>Plan and data</h3>${table(plan)}</div></div></section>`;
}

function summarySection(run: RunFolder, s: EpochSeries): string {
  const secs = s.seconds.filter((v): v is number => v !== null);
  const total = secs.reduce((a, b) => a + b, 0);
  const perEpoch = samplesPerEpoch(run);
  const best = Math.min(...s.val.filter((v): v is number => v !== null));
  const rows: [string, string][] = [
    ["epochs finished", `${s.train.length}${run.info === undefined ? "" : ` of ${run.info.epochs}`}`],
    ["last train / validation loss", `${fmtNum(s.train.at(-1))} / ${fmtNum(s.val.at(-1))}`],
    ["best validation loss", Number.isFinite(best) ? fmtNum(best) : "–"],
    ["training time (sum of epochs)", fmtSeconds(total)],
    ["mean epoch time", secs.length === 0 ? "–" : fmtSeconds(total / secs.length)],
    [
      "throughput",
      perEpoch === undefined || total <= 0
        ? "–"
        : `${fmtNum((perEpoch * secs.length) / total, 3)} samples/s, ${fmtNum(((run.info?.iters_per_epoch ?? 0) * secs.length) / total, 3)} steps/s (epoch wall time)`,
    ],
  ];
  return `<section id="summary"><h2>Summary</h2>${table(rows)}</section>`;
}

function chartsSection(run: RunFolder, s: EpochSeries): string {
  if (s.train.length === 0)
    return `<section id="charts"><h2>Curves</h2><p class="note">No epoch has finished yet.</p></section>`;
  const charts = chartSpecs(run, s)
    .map((c) => `<figure class="chart">${renderChartSvg(c)}</figure>`)
    .join("");
  return `<section id="charts"><h2>Curves</h2>${charts}</section>`;
}

function checkpointsSection(list: readonly CheckpointEntry[]): string {
  if (list.length === 0)
    return `<section id="checkpoints"><h2>Checkpoints</h2><p class="note">No checkpoint found.</p></section>`;
  const rows = list.map((c) => {
    const m = c.meta;
    return `<tr><td>${c.kind}</td><td><code>${escapeHtml(c.file)}</code></td><td>${m.current_epoch}</td><td>${m.global_step}</td><td>${fmtNum(m._best_ema)}</td><td>${fmtBytes(c.bytes)}</td><td>${new Date(m.saved_at * 1000).toISOString().replace("T", " ").slice(0, 19)} UTC</td></tr>`;
  });
  return `<section id="checkpoints"><h2>Checkpoints</h2><table class="list"><tr><th>kind</th><th>file</th><th>epochs done</th><th>step</th><th>best validation loss</th><th>size</th><th>saved</th></tr>${rows.join("")}</table></section>`;
}

const SLICE_PX = 84;

function previewSection(p: PreviewGrid | { error: string } | undefined): string {
  const head = `<section id="preview"><h2>Validation patches</h2>`;
  if (p === undefined) return `${head}<p class="note">Not computed (--no-preview).</p></section>`;
  if ("error" in p) return `${head}<p class="note">Not computed: ${escapeHtml(p.error)}</p></section>`;
  // the longest side of every slice of the grid is shown at SLICE_PX (nearest-neighbour upscaling)
  const longest = Math.max(
    ...p.rows.flatMap((r) => r.cells.flatMap((c) => c.slices.map((s) => Math.max(s.width, s.height)))),
  );
  const k = SLICE_PX / Math.max(1, longest);
  const cell = (c: PreviewGrid["rows"][number]["cells"][number]) =>
    `<div class="slices">${c.slices.map((s, a) => `<img src="${s.src}" width="${Math.round(s.width * k)}" height="${Math.round(s.height * k)}" alt="${"xyz"[a]} centre slice" title="${"xyz"[a]} centre slice">`).join("")}</div>`;
  const header = `<tr><th></th>${p.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr>`;
  const rows = p.rows
    .map(
      (r) =>
        `<tr><th class="rowlabel">${escapeHtml(r.label)}</th>${r.cells.map((c) => `<td class="cell">${cell(c)}</td>`).join("")}</tr>`,
    )
    .join("");
  const src = `computed from <code>${escapeHtml(basename(p.source.checkpoint))}</code> (after ${p.source.epoch} epoch${p.source.epoch === 1 ? "" : "s"}) on ${escapeHtml(p.source.images.join(", "))}; each cell: the centre slices normal to x, y (top) and z (bottom)`;
  return `${head}<p>${escapeHtml(p.caption)}</p><p class="note">${src}.</p><table class="grid">${header}${rows}</table></section>`;
}

const CSS = `body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}h3{font-size:15px}
.sub{color:#666;margin-top:0}.note{color:#666}.cols{display:flex;gap:32px;flex-wrap:wrap}.cols>div{flex:1;min-width:420px}
table.kv th{text-align:left;font-weight:normal;color:#555;padding:2px 14px 2px 0;vertical-align:top;white-space:nowrap}table.kv td{padding:2px 0;word-break:break-all}
table.list{border-collapse:collapse;font-size:13px}table.list th,table.list td{border:1px solid #ddd;padding:3px 8px;text-align:left}
figure.chart{margin:12px 0}table.grid{border-collapse:collapse}table.grid th{font-weight:normal;font-size:13px;padding:4px}
th.rowlabel{text-align:right;max-width:220px;font-size:12px;color:#444}td.cell{padding:4px 10px;white-space:nowrap}
div.slices{display:grid;grid-template-columns:repeat(2,max-content);gap:3px}div.slices img{image-rendering:pixelated;border:1px solid #ccc}code{font-size:12px}`;

export function renderReportHtml(
  run: RunFolder,
  preview: PreviewGrid | { error: string } | undefined,
  generatedAt = new Date(),
): string {
  const s = epochSeries(run);
  const title = `ssl3d run report: ${run.name}`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeHtml(title)}</title><style>${CSS}</style></head>
<body><h1>${escapeHtml(run.name)}</h1><p class="sub">ssl3d run report, generated ${generatedAt.toISOString().replace("T", " ").slice(0, 19)} UTC</p>
${summarySection(run, s)}
${configurationSection(run)}
${chartsSection(run, s)}
${checkpointsSection(run.checkpoints)}
${previewSection(preview)}
</body></html>
`;
}
