// Where the pinned npm MicroPython VM lives, for the node drivers (tools/mpvm_node.mjs,
// tools/fakeboard/board_node.mjs): the first node_modules above the calling file.

import { fileURLToPath } from "node:url";
import path from "node:path";
import fs from "node:fs";

const REL = "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs";

/** Path of the package's micropython.mjs above fromUrl (an import.meta.url); throws when absent. */
export function findPackage(fromUrl) {
  let dir = path.dirname(fileURLToPath(fromUrl));
  for (;;) {
    const candidate = path.join(dir, REL);
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`${REL} not found above ${fileURLToPath(fromUrl)}; run npm ci`);
}
