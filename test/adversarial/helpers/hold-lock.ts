/**
 * A separate process that takes a folder lock like a trainer or preprocessor does and holds it until killed; prints
 * "locked <pid>" once it holds it. Usage: node --import tsx hold-lock.ts DIR [LOCKNAME]
 */
import { lockFolder } from "../../../runtime/src/io/folder-lock.js";

const [dir, name] = process.argv.slice(2);
lockFolder(dir!, { owner: "test holder", ...(name === undefined ? {} : { name }) });
process.stdout.write(`locked ${process.pid}\n`);
setInterval(() => undefined, 60_000);
