// Preloaded (`--import`) into a CLI child by test/adversarial/helpers/cli.ts: on exit, the main thread writes the
// process's peak resident set size (KiB, getrusage maxrss) to $SSL3D_TEST_PEAK_RSS_FILE.
import { writeFileSync } from "node:fs";
import { isMainThread } from "node:worker_threads";

const file = process.env.SSL3D_TEST_PEAK_RSS_FILE;
if (isMainThread && file) {
  process.on("exit", () => {
    writeFileSync(file, String(process.resourceUsage().maxRSS));
  });
}
