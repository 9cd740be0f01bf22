/** Minimal parser of the Prometheus text exposition format: unlabelled sample values by metric name. */
export function parsePrometheusText(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const [, name, labels, value] = m;
    if (name === undefined || value === undefined) continue;
    if (labels !== undefined && labels !== "{}" && out.has(name)) continue; // first series wins
    const v = value === "NaN" ? NaN : value === "+Inf" ? Infinity : value === "-Inf" ? -Infinity : Number(value);
    if (!out.has(name)) out.set(name, v);
  }
  return out;
}

/** The training metrics (docs/training.md, "Metrics") that feed PretrainRun status.progress. */
export function progressFromMetrics(text: string): { step?: number; epoch?: number; loss?: number } {
  const m = parsePrometheusText(text);
  const out: { step?: number; epoch?: number; loss?: number } = {};
  const step = m.get("pretrain_global_step");
  const epoch = m.get("pretrain_epoch");
  const loss = m.get("pretrain_train_loss");
  if (step !== undefined && Number.isFinite(step)) out.step = step;
  if (epoch !== undefined && Number.isFinite(epoch)) out.epoch = epoch;
  if (loss !== undefined) out.loss = loss;
  return out;
}
