// Preload for the adversarial tier: writes this process's peak resident set size (KiB, process.resourceUsage)
// to $SSL3D_PEAK_RSS_FILE when it exits, so tests can bound the memory a hostile input made the CLI use.
import { writeFileSync } from "node:fs";

const out = process.env.SSL3D_PEAK_RSS_FILE;
if (out !== undefined && out !== "") {
  process.on("exit", () => {
    writeFileSync(out, String(process.resourceUsage().maxRSS));
  });
}
