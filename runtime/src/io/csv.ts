/**
 * A small RFC 4180 CSV parser (quoted fields, doubled quotes, CRLF/LF, embedded newlines) returning one record per
 * row keyed by the header. Enough for OpenMind's `openneuro_metadata.csv`; errors name the file and line.
 */
import { ConfigError } from "../errors.js";

export function parseCsv(text: string, file: string): Record<string, string>[] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  let line = 1;
  let i = 0;
  const src = text.startsWith("\uFEFF") ? text.slice(1) : text;
  const endField = (): void => {
    row.push(field);
    field = "";
  };
  const endRow = (): void => {
    endField();
    rows.push(row);
    row = [];
  };
  while (i < src.length) {
    const ch = src[i]!;
    if (quoted) {
      if (ch === '"') {
        if (src[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      if (ch === "\n") line++;
      field += ch;
      i++;
      continue;
    }
    if (ch === '"') {
      if (field !== "") throw new ConfigError(`line ${line}: quote inside an unquoted field`, { file });
      quoted = true;
      i++;
      continue;
    }
    if (ch === ",") {
      endField();
      i++;
      continue;
    }
    if (ch === "\r" && src[i + 1] === "\n") {
      endRow();
      line++;
      i += 2;
      continue;
    }
    if (ch === "\n") {
      endRow();
      line++;
      i++;
      continue;
    }
    field += ch;
    i++;
  }
  if (quoted) throw new ConfigError(`line ${line}: unterminated quoted field`, { file });
  if (field !== "" || row.length > 0) endRow();
  const nonEmpty = rows.filter((r) => !(r.length === 1 && r[0] === ""));
  const header = nonEmpty[0];
  if (header === undefined) throw new ConfigError("empty CSV file (no header row)", { file });
  return nonEmpty.slice(1).map((r, k) => {
    if (r.length !== header.length)
      throw new ConfigError(`row ${k + 2} has ${r.length} fields, the header has ${header.length}`, { file });
    return Object.fromEntries(header.map((h, j) => [h, r[j]!]));
  });
}
