import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError } from "../errors.js";
import { parseCsv } from "./csv.js";

test("quoted fields, doubled quotes, embedded separators and newlines, CRLF, BOM", () => {
  const text = '\uFEFFa,b,c\r\n1,"x, y","he said ""hi"""\r\n2,,"multi\nline"\n';
  assert.deepEqual(parseCsv(text, "f.csv"), [
    { a: "1", b: "x, y", c: 'he said "hi"' },
    { a: "2", b: "", c: "multi\nline" },
  ]);
});

test("malformed CSV names the file and row", () => {
  assert.throws(
    () => parseCsv("a,b\n1,2,3\n", "f.csv"),
    (e: unknown) => e instanceof ConfigError && /f\.csv: row 2 has 3 fields/.test(e.message),
  );
  assert.throws(() => parseCsv('a\n"open\n', "f.csv"), /unterminated/);
  assert.throws(() => parseCsv("", "f.csv"), /empty CSV/);
});
