/**
 * Progress of a per-image stage: a cli-progress bar on an interactive terminal (stderr), otherwise one structured
 * pino line per finished item (what log collectors in a pod want).
 */
import cliProgress from "cli-progress";
import { log } from "./log.js";
import { processEnv } from "../config/settings.js";

export interface Progress {
  tick(fields?: Record<string, unknown>): void;
  stop(): void;
}

export function createProgress(stage: string, total: number, opts: { tty?: boolean } = {}): Progress {
  const tty = opts.tty ?? (process.stderr.isTTY && processEnv().CI === undefined);
  let done = 0;
  if (tty && total > 0) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: `${stage} [{bar}] {value}/{total} images | {percentage}% | ETA {eta_formatted}`,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return {
      tick: () => {
        done++;
        bar.update(done);
      },
      stop: () => {
        bar.stop();
      },
    };
  }
  const t0 = Date.now();
  return {
    tick: (fields = {}) => {
      done++;
      log().info(
        { stage, done, total, elapsedSeconds: (Date.now() - t0) / 1000, ...fields },
        `${stage} ${done}/${total}`,
      );
    },
    stop: () => undefined,
  };
}
