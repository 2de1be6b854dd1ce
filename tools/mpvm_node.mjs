// Long-running driver for the MicroPython WebAssembly VM (npm
// @micropython/micropython-webassembly-pyscript), spoken to over stdin/stdout.
//
// Usage: node tools/mpvm_node.mjs [--heapsize=BYTES] [--pystack=WORDS]
//
// One JSON object per line in each direction; every request gets exactly one reply line.
//   {"op":"write","path":"/lib/protocol/cobs.py","data_b64":"..."}  -> {"ok":true}
//   {"op":"exec","code":"..."}     -> {"ok":true,"stdout":"...","stderr":"...","ms":1.2}
//                                  or {"ok":false,"stdout":"...","stderr":"...","type":"ValueError",
//                                      "error":"<traceback text>","ms":1.2}
//   {"op":"ping"}                  -> {"ok":true,"version":"1.29.0","load_ms":15.0}
//   {"op":"quit"}                  -> {"ok":true}, then the process exits
// An "id" field in a request is echoed in its reply. A reply with "fatal":true means the
// VM itself failed (not a Python exception) and should be discarded.
// Python's stdout/stderr are collected per request and never reach this process's stdout,
// which carries only the JSON replies; anything the JS side logs goes to stderr.

import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import path from "node:path";
import { findPackage } from "./mpvm_package.mjs";

const log = (...args) => process.stderr.write(args.join(" ") + "\n");
// Keep the JSON channel clean whatever the emscripten glue prints.
console.log = log;
console.info = log;
console.warn = log;
console.debug = log;

function parseArgs(argv) {
  const opts = { heapsize: 4 * 1024 * 1024, pystack: 2048 };
  for (const arg of argv) {
    const m = /^--(heapsize|pystack)=(\d+)$/.exec(arg);
    if (m) {
      opts[m[1]] = Number(m[2]);
    } else if (/^\d+$/.test(arg)) {
      opts.heapsize = Number(arg);
    } else {
      throw new Error(`unknown argument: ${arg}`);
    }
  }
  return opts;
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function mkdirs(FS, dir) {
  let current = "";
  for (const part of dir.split("/").filter((p) => p.length > 0)) {
    current += "/" + part;
    if (!FS.analyzePath(current).exists) FS.mkdir(current);
  }
}

// Runs every request inside a function so that an exception escaping user code first
// releases a heap lock: with the heap still locked, the VM hangs while converting the
// exception for JavaScript (seen with micropython.heap_lock() at module level).
const PRELUDE = `
import sys, micropython
if '/lib' not in sys.path:
    sys.path.append('/lib')
if '' not in sys.path:
    sys.path.insert(0, '')
def __mpvm_exec(src):
    try:
        exec(compile(src, '<exec>', 'exec'), globals())
    except BaseException:
        for _ in range(100):
            try:
                bytearray(1)
                break
            except MemoryError:
                micropython.heap_unlock()
        raise
`;

// Traceback lines of the wrapper above, dropped from error replies.
const WRAPPER_FRAME = /^ {2}File "<stdin>", line \d+, in (<module>|__mpvm_exec)$/;

const opts = parseArgs(process.argv.slice(2));
const t0 = performance.now();
const { loadMicroPython } = await import(pathToFileURL(findPackage(import.meta.url)).href);
let outBytes = [];
let errBytes = [];
const mp = await loadMicroPython({
  heapsize: opts.heapsize,
  pystack: opts.pystack,
  linebuffer: false,
  stdout: (data) => {
    for (const b of data) outBytes.push(b);
  },
  stderr: (data) => {
    for (const b of data) errBytes.push(b);
  },
});
mkdirs(mp.FS, "/lib");
mp.runPython(PRELUDE);
const loadMs = performance.now() - t0;
const version = (() => {
  mp.runPython("import sys\n__mpvm_version = '.'.join(str(v) for v in sys.implementation.version[:3])");
  return String(mp.globals.get("__mpvm_version"));
})();

const decoder = new TextDecoder("utf-8");
function takeOutput() {
  const stdout = decoder.decode(new Uint8Array(outBytes));
  const stderr = decoder.decode(new Uint8Array(errBytes));
  outBytes = [];
  errBytes = [];
  return { stdout, stderr };
}

function handle(req) {
  switch (req.op) {
    case "ping":
      return { ok: true, version, load_ms: loadMs, heapsize: opts.heapsize };
    case "write": {
      if (typeof req.path !== "string" || !req.path.startsWith("/")) {
        return { ok: false, error: `write: path must be absolute, got ${JSON.stringify(req.path)}` };
      }
      mkdirs(mp.FS, path.posix.dirname(req.path));
      mp.FS.writeFile(req.path, Buffer.from(req.data_b64 ?? "", "base64"));
      return { ok: true };
    }
    case "exec": {
      if (typeof req.code !== "string") return { ok: false, error: "exec: code must be a string" };
      takeOutput();
      const start = performance.now();
      try {
        mp.globals.set("__mpvm_src", req.code);
        mp.runPython("__mpvm_exec(__mpvm_src)");
        return { ok: true, ...takeOutput(), ms: performance.now() - start };
      } catch (e) {
        const ms = performance.now() - start;
        if (e && e.constructor && e.constructor.name === "PythonError") {
          const error = String(e.message)
            .split("\n")
            .filter((l) => !WRAPPER_FRAME.test(l))
            .join("\n");
          return { ok: false, ...takeOutput(), type: String(e.type), error, ms };
        }
        return { ok: false, fatal: true, ...takeOutput(), type: "JavaScriptError", error: String(e && e.stack ? e.stack : e), ms };
      }
    }
    default:
      return { ok: false, error: `unknown op ${JSON.stringify(req.op)}` };
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
for await (const line of rl) {
  if (line.trim() === "") continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ ok: false, error: `bad request line: ${e}` });
    continue;
  }
  let res;
  if (req.op === "quit") {
    res = { ok: true };
  } else {
    try {
      res = handle(req);
    } catch (e) {
      res = { ok: false, fatal: true, error: String(e && e.stack ? e.stack : e) };
    }
  }
  if (req.id !== undefined) res.id = req.id;
  reply(res);
  if (req.op === "quit") break;
}
process.exit(0);
