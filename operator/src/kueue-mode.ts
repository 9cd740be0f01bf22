/** SSL3D_KUEUE: whether the operator watches Kueue Workloads (ADR 0088); `auto` asks the API server once at start. */
export type KueueMode = "auto" | "true" | "false";

/** The mode from the variable's value (unset = auto); anything else is a one-line error naming the variable. */
export function parseKueueMode(value: string | undefined): KueueMode {
  const v = value ?? "auto";
  if (v === "auto" || v === "true" || v === "false") return v;
  throw new Error(`SSL3D_KUEUE: expected auto, true or false, got "${v}"`);
}
