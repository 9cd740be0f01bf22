/**
 * The README's first command in its shortened CI mode: `ssl3d run --quick` (the embedded examples/laptop.yaml)
 * runs the real stages (demo phantoms, collection-summary, plan-and-preprocess, train) as child processes, to
 * completion and writes the run report (checked in headless Chromium); a second invocation skips what is done. The
 * first one runs on a pseudo-terminal (util-linux `script`), as a person would start it: children's logs come as
 * readable lines, no raw JSON summary, and the tfjs backend choice is one line (the optional backends' probe errors
 * only at debug level).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { commands } from "../../../runtime/src/cli/commands/index.js";
import { REPO } from "../../helpers/chart.js";
import { checkReportPage } from "../../helpers/report-page.js";
import { run } from "../../helpers/tools.js";

const NEEDED = ["demo", "collection-summary", "plan-and-preprocess", "train", "run"];

function filesBelow(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`;
}

/** What a person sees: sentences and short log lines, not JSON; one backend line that says why. */
function checkTerminalOutput(out: string): void {
  const lines = out.split("\n");
  const json = lines.filter((l) => l.trimStart().startsWith("{"));
  assert.deepEqual(json, [], "raw JSON lines on the terminal");
  assert.match(out, /\[2\/3\] Plan\/demo: Ready: 4\/4 image\(s\) preprocessed \(onemmiso\) in /);
  assert.match(out, /\[1\/3\] Collection\/demo: Ready: 4 image\(s\), 2 subject\(s\)/);
  assert.match(out, /^ {2}\d\d:\d\d:\d\d info Epoch finished epoch=0 /m, "children's logs as readable lines");
  const backend = lines.filter((l) => l.includes("tfjs backend"));
  assert.equal(backend.length, 1, backend.join("\n"));
  assert.match(backend[0]!, /info tfjs backend: \S+.* \((auto: .+|requested by .+)\)/);
  assert.doesNotMatch(out, /Cannot find (package|module)/);
}

test(
  "ssl3d run --quick runs the laptop example end to end, writes a run report Chromium renders; a re-run skips what is done",
  { timeout: 1_200_000 },
  async () => {
    const missing = NEEDED.filter((n) => !commands.some((c) => c.name === n));
    assert.deepEqual(missing, [], "the CLI lacks stages the runner needs");
    const dir = mkdtempSync(join(tmpdir(), "ssl3d-local-run-"));
    try {
      const state = join(dir, "state");
      const cmd = [
        process.execPath,
        join(REPO, "bin", "ssl3d.mjs"),
        "run",
        "--quick",
        "--state-dir",
        state,
        "--metrics-port",
        "0",
      ]
        .map(shellQuote)
        .join(" ");
      const first = run("script", ["-qec", cmd, "/dev/null"], { cwd: dir, timeoutMs: 1_100_000 });
      assert.equal(first.status, 0, `${first.stdout}\n${first.stderr.slice(-4000)}`);
      assert.match(first.stdout, /PretrainRun\/demo: Succeeded after 1 attempt/);
      checkTerminalOutput(first.stdout.replace(/\r/g, ""));
      const status = JSON.parse(readFileSync(join(state, "status", "pretrainrun-demo.json"), "utf8")) as {
        phase: string;
        checkpointDir: string;
      };
      assert.equal(status.phase, "Succeeded");
      const outputs = [
        ...filesBelow(status.checkpointDir),
        ...filesBelow(join(dirname(status.checkpointDir), "results")),
      ];
      assert.ok(
        outputs.some((f) => /checkpoint/.test(f)),
        `no checkpoint written: ${outputs.join(", ")}`,
      );
      assert.ok(
        outputs.some((f) => f.endsWith("progress.png")),
        "no progress.png",
      );
      // the run report: path printed, and the page renders in headless Chromium with charts and validation pictures
      const report = /PretrainRun\/demo: report (\S+\.html)/.exec(first.stdout)?.[1];
      assert.ok(report !== undefined && existsSync(report), `no report written:\n${first.stdout}`);
      await checkReportPage(report, { charts: 3, preview: true });
      const again = run(
        process.execPath,
        [join(REPO, "bin", "ssl3d.mjs"), "run", "--quick", "--state-dir", state, "--metrics-port", "0"],
        { cwd: dir, timeoutMs: 600_000 },
      );
      assert.equal(again.status, 0, again.stderr.slice(-4000));
      assert.match(again.stdout, /Plan\/demo: up to date/);
      assert.match(again.stdout, /PretrainRun\/demo: already Succeeded/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
