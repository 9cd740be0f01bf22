/**
 * bin/launch.mjs re-executes the CLI under the pinned Node (or with the GPU loader path); the re-executed process must
 * not outlive its launcher: `kill -9` of the launcher (what a user or `ssl3d run`'s test does to the pid it started)
 * stops the real process too, through SSL3D_PARENT_PID and runtime/src/local/parent-watch.ts.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { test } from "node:test";

const repo = join(import.meta.dirname, "..", "..");
const fixture = join(repo, "test", "fixtures", "launch-sleeper.mjs");

/** A Node older than 22.19 on PATH (Debian's, on these machines): the launcher re-executes under the pinned one. */
function oldNode(): string | undefined {
  const candidates = [...(process.env.PATH ?? "").split(delimiter).map((d) => join(d, "node")), "/usr/bin/node"];
  return candidates.find((bin) => {
    if (!existsSync(bin)) return false;
    const [major = 0, minor = 0] = spawnSync(bin, ["-p", "process.versions.node"], { encoding: "utf8" })
      .stdout.trim()
      .split(".")
      .map(Number);
    return major > 0 && (major < 22 || (major === 22 && minor < 19));
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const old = oldNode();
test(
  "kill -9 of the launcher stops the process it re-executed",
  { skip: old === undefined && "no Node older than 22.19 on this machine" },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "ssl3d-launch-"));
    try {
      const pidFile = join(dir, "pid");
      const env = Object.fromEntries(
        Object.entries(process.env).filter(
          ([k]) => !["SSL3D_REEXEC", "SSL3D_PARENT_PID", "NODE_TEST_CONTEXT"].includes(k),
        ),
      );
      const launcher = spawn(old!, [fixture, pidFile], { env, stdio: "ignore" });
      const deadline = Date.now() + 60_000;
      while (!existsSync(pidFile) || readFileSync(pidFile, "utf8") === "") {
        assert.ok(Date.now() < deadline, "the re-executed process never started");
        await new Promise((r) => setTimeout(r, 100));
      }
      const real = Number(readFileSync(pidFile, "utf8"));
      assert.notEqual(real, launcher.pid, "the launcher re-executed itself");
      launcher.kill("SIGKILL");
      const stopBy = Date.now() + 30_000;
      while (alive(real) && Date.now() < stopBy) await new Promise((r) => setTimeout(r, 200));
      const orphan = alive(real);
      if (orphan) process.kill(real, "SIGKILL");
      assert.ok(!orphan, `the re-executed process ${real} outlived its launcher by 30 s`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
