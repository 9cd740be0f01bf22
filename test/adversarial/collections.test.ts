/**
 * Adversarial tier, collections (issue 13 point 8): `pretrain_data.json` parses strictly. Duplicate keys and
 * `__proto__` keys are errors naming the JSON path (JSON.parse would silently keep the last subject or drop one);
 * deeply nested metadata is refused with a clear error instead of a stack overflow. Through the CLI
 * (`collection-summary`, exit code 2) and through the reader (`io/strict-json.ts`) directly.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ConfigError } from "../../runtime/src/errors.js";
import { readCollection } from "../../runtime/src/io/collection-file.js";
import { parseStrictJson } from "../../runtime/src/io/strict-json.js";
import { errorLine, runCli } from "./hostile-files.js";

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "ssl3d-adv-coll-"));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const image = (n: string): string =>
  `{"name": "${n}.nii.gz", "image_path": "/data/${n}.nii.gz", "modality": "T1w", "image_info": null, "associated_masks": null}`;
const subject = (id: string, info = "null"): string =>
  `"${id}": {"subject_id": "${id}", "subject_info": ${info}, "sessions": {"ses-1": {"session_id": "ses-1", "session_info": null, "images": [${image(id)}]}}}`;
const collection = (subjects: string): string =>
  `{"collection_index": 1, "collection_name": "c", "datasets": {"ds": {"dataset_index": "ds", "name": null, "dataset_info": null, "subjects": {${subjects}}}}}`;

function write(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe("through the CLI", () => {
  const cases: { name: string; text: () => string; field: RegExp }[] = [
    {
      name: "a duplicated subject",
      text: () => collection(`${subject("sub-01")}, ${subject("sub-02")}, ${subject("sub-01")}`),
      field: /datasets\.ds\.subjects\.sub-01: duplicate key "sub-01"/,
    },
    {
      name: "a duplicated field inside an image",
      text: () => collection(subject("sub-01").replace('"modality": "T1w"', '"modality": "T1w", "modality": "T2w"')),
      field: /images\[0\]\.modality: duplicate key "modality"/,
    },
    {
      name: "a __proto__ subject",
      text: () => collection(`${subject("sub-01")}, "__proto__": {"subject_id": "x"}`),
      field: /datasets\.ds\.subjects\.__proto__: key "__proto__" is not allowed/,
    },
    {
      name: "a __proto__ key in metadata",
      text: () => collection(subject("sub-01", '{"__proto__": {"polluted": true}}')),
      field: /subjects\.sub-01\.subject_info\.__proto__: key "__proto__" is not allowed/,
    },
    {
      name: "metadata nested 100000 levels",
      text: () => collection(subject("sub-01", `${"[".repeat(100_000)}${"]".repeat(100_000)}`)),
      field: /subjects\.sub-01\.subject_info(\[0\])+: nested deeper than 64 levels \(limit SSL3D_JSON_MAX_DEPTH\)/,
    },
  ];
  for (const c of cases) {
    test(`${c.name}: exit 2, one line naming the file and the JSON path`, () => {
      const f = write(`${c.name.replace(/\W+/g, "-")}.json`, c.text());
      const r = runCli(["collection-summary", f]);
      assert.equal(r.status, 2, r.stderr);
      const line = errorLine(r);
      assert.ok(line.startsWith(`ssl3d: error: ${f}: `), line);
      assert.match(line, c.field);
      assert.doesNotMatch(r.stderr, /internal error|RangeError|Maximum call stack/);
    });
  }
});

describe("the strict reader", () => {
  test("accepts what JSON.parse accepts and gives the same value", () => {
    const texts = [
      '{"a": [1, -2.5e3, true, false, null, "x\\u00e9\\n"], "b": {}}',
      "[]",
      '"s"',
      "0",
      ' {"k" : [ [ ] , { } ] } ',
    ];
    for (const t of texts) assert.deepEqual(parseStrictJson(t, { file: "t.json" }), JSON.parse(t));
  });

  test("rejects what JSON.parse rejects, naming line and column", () => {
    for (const t of ['{"a": 1,}', "[1 2]", '{"a" 1}', "01", "-", '"\\x"', "[", '{"a": tru}', '"a\nb"', "{} x"]) {
      assert.throws(() => JSON.parse(t));
      assert.throws(
        () => parseStrictJson(t, { file: "t.json" }),
        (e: unknown) =>
          e instanceof ConfigError && /^t\.json: .*invalid JSON: .*\(line \d+, column \d+\)$/.test(e.message),
        t,
      );
    }
  });

  test("a duplicate deep inside names the full path", () => {
    assert.throws(
      () => parseStrictJson('{"a": [{"b": 1}, {"b": 1, "c": {"d": 1, "d": 2}}]}', { file: "f.json" }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.field === "a[1].c.d" &&
        /^f\.json: a\[1\]\.c\.d: duplicate key "d"/.test(e.message),
    );
  });

  test("the depth limit is overridable", () => {
    const deep = `${"[".repeat(70)}${"]".repeat(70)}`;
    assert.throws(() => parseStrictJson(deep, { file: "f" }), /nested deeper than 64 levels/);
    assert.deepEqual(parseStrictJson("[[[]]]", { file: "f", maxDepth: 3 }), [[[]]]);
    assert.throws(() => parseStrictJson("[[[[]]]]", { file: "f", maxDepth: 3 }), /nested deeper than 3 levels/);
  });

  test("a valid collection still reads, Python NaN/Infinity as null", async () => {
    const f = write(
      "ok.json",
      collection(`${subject("sub-01", '{"score": NaN, "x": -Infinity, "constructor": 1}')}, ${subject("sub-02")}`),
    );
    const c = await readCollection(f, { env: {} });
    assert.deepEqual(Object.keys(c.datasets.ds!.subjects), ["sub-01", "sub-02"]);
    assert.deepEqual(c.datasets.ds!.subjects["sub-01"]!.subject_info, { score: null, x: null, constructor: 1 });
  });

  test("readCollection no longer drops a duplicated subject silently", async () => {
    const f = write("dup.json", collection(`${subject("sub-01")}, ${subject("sub-01")}`));
    await assert.rejects(
      readCollection(f, { env: {} }),
      (e: unknown) => e instanceof ConfigError && e.field === "datasets.ds.subjects.sub-01",
    );
  });
});
