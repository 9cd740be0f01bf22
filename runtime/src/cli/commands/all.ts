// One line per CLI sub-command module (kept one-line-per-command so parallel branches merge cleanly).
export { archCommand } from "./arch.js";
export { collectionSummaryCommand } from "./collection-summary.js";
export { convertCommand, convertOpenMindCommand } from "./convert.js";
export { demoCommand } from "./demo.js";
export { doctorCommand } from "./doctor.js";
export { exportCommand } from "./export.js";
export { importCommand } from "./import.js";
export { inspectCommand } from "./inspect.js";
export { fingerprintCommand } from "./fingerprint.js";
export { planAndPreprocessCommand } from "./plan-and-preprocess.js";
export { planCommand } from "./plan.js";
export { preprocessCommand } from "./preprocess.js";
export { reportCommand } from "./report.js";
export { runCommand } from "./run.js";
export { trainCommand } from "./train.js";
