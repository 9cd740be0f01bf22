/** RFC 7386 JSON merge patch from `before` to `after` (removed keys become null; arrays are replaced whole). */
export function createMergePatch(before: unknown, after: unknown): unknown {
  if (!isPlainObject(before) || !isPlainObject(after)) return after === undefined ? null : after;
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(before)) {
    if (before[k] !== undefined && (!(k in after) || after[k] === undefined)) patch[k] = null;
  }
  for (const [k, v] of Object.entries(after)) {
    if (v === undefined) continue;
    const b = before[k];
    if (isPlainObject(b) && isPlainObject(v)) {
      const sub = createMergePatch(b, v);
      if (isPlainObject(sub) && Object.keys(sub).length > 0) patch[k] = sub;
    } else if (JSON.stringify(b) !== JSON.stringify(v)) {
      patch[k] = v;
    }
  }
  return patch;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
