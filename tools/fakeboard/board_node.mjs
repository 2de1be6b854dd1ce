// The MicroPython VM behind a fake USB board (tools/fakeboard): the npm WebAssembly build,
// driven over stdin/stdout with the JSON-lines protocol of tools/mpvm_node.mjs (one reply
// per request, "id" echoed), so tools.mpvm.NodeMicroPython runs it.
//
// Usage: node tools/fakeboard/board_node.mjs [--heapsize=BYTES] [--pystack=WORDS]
//
// Unlike mpvm_node.mjs it leaves the VM's __main__ clean (the board's REPL shows it) and
// holds one VM at a time that "load" replaces (a reset of the board).
//   {"op":"ping"}  -> {"ok":true,"version":"1.29.0","load_ms":..,"banner":"MicroPython v..."}
//   {"op":"load","files":{path:b64},"dirs":[path],"hidden":{name:b64},"capacity":N,
//    "corrupt":regex|null}  -> {"ok":true,"load_ms":..}
//       a fresh VM holding the board's files and folders, the hidden helpers under /_sim,
//       the flash capacity (writes beyond it fail with errno 28) and the corrupt pattern
//       (a file matching it gets one byte flipped when it is closed after writing)
//   {"op":"exec","code":"..."}  -> {"ok":true,"out_b64":..,"result":str|null,"reset":..}
//       or {"ok":false,...,"type":"ValueError","error":"<traceback>"}
//   {"op":"repl_init"}  -> {"ok":true,"out_b64":..}
//   {"op":"feed","data_b64":..}  -> {"ok":true,"out_b64":..,"consumed":n,"ret":r,"reset":..}
//       bytes to the REPL until all are taken, the REPL asks for a soft reset (ret 256) or
//       machine.reset() was called (reset = "reset" or "soft_reset"; output after it is
//       dropped, as a board that resets prints nothing more)
//   {"op":"files"}  -> {"ok":true,"files":{path:b64},"dirs":[path]}
//   {"op":"quit"}  -> {"ok":true}, then the process exits
// Every reply carries "dirty": true when a board file or folder changed since the last
// "files". "fatal": true means the VM itself failed (not a Python exception): load again.
// Python code reaches this driver through the registered module _fbjs: result(str),
// reset(kind), used(), capacity(), urandom(n) -> hex.

import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { webcrypto } from "node:crypto";
import path from "node:path";
import { findPackage } from "../mpvm_package.mjs";

const log = (...args) => process.stderr.write(args.join(" ") + "\n");
console.log = log;
console.info = log;
console.warn = log;
console.debug = log;

const BLOCK = 4096;
const HIDDEN_DIR = "/_sim";
const SYSTEM_DIRS = new Set(["dev", "proc", "_sim"]); // top-level names that are not the board's
const O_APPEND = 0o2000;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const ENOSPC = 28; // MicroPython's (and a Pico's) number: raised as OSError(28)

function parseArgs(argv) {
  const opts = { heapsize: 1024 * 1024, pystack: 2048 };
  for (const arg of argv) {
    const m = /^--(heapsize|pystack)=(\d+)$/.exec(arg);
    if (!m) throw new Error(`unknown argument: ${arg}`);
    opts[m[1]] = Number(m[2]);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const { loadMicroPython } = await import(pathToFileURL(findPackage(import.meta.url)).href);

// -- state of the current VM --------------------------------------------------------------
let mp = null;
let out = [];
let capacity = 1 << 30;
let corrupt = null; // RegExp or null
let dirty = false;
let resetKind = null;
let resetAt = 0;
let result = null;

function blocks(size) {
  return Math.ceil(size / BLOCK) * BLOCK;
}

function isBoardPath(p) {
  if (typeof p !== "string" || !p.startsWith("/")) return false;
  const top = p.split("/")[1];
  return !SYSTEM_DIRS.has(top);
}

function walk(FS, visit) {
  const stack = ["/"];
  while (stack.length) {
    const dir = stack.pop();
    for (const name of FS.readdir(dir)) {
      if (name === "." || name === "..") continue;
      if (dir === "/" && SYSTEM_DIRS.has(name)) continue;
      const p = dir === "/" ? `/${name}` : `${dir}/${name}`;
      const node = FS.lookupPath(p).node;
      if (FS.isDir(node.mode)) {
        visit(p, node, true);
        stack.push(p);
      } else if (FS.isFile(node.mode)) {
        visit(p, node, false);
      }
    }
  }
}

function used(FS) {
  let total = 0;
  walk(FS, (p, node, isDir) => {
    if (!isDir) total += blocks(node.usedBytes || 0);
  });
  return total;
}

function mkdirs(FS, dir) {
  let current = "";
  for (const part of dir.split("/").filter((p) => p.length > 0)) {
    current += "/" + part;
    if (!FS.analyzePath(current).exists) FS.mkdir(current);
  }
}

function rmtree(FS, dir) {
  if (!FS.analyzePath(dir).exists) return;
  for (const name of FS.readdir(dir)) {
    if (name === "." || name === "..") continue;
    const p = `${dir}/${name}`;
    if (FS.isDir(FS.lookupPath(p).node.mode)) rmtree(FS, p);
    else FS.unlink(p);
  }
  FS.rmdir(dir);
}

// Capacity, corruption and change tracking, at the level of Emscripten's FS calls, so that
// they hold for every writer (mpremote's scripts, the firmware's atomic writes).
function installHooks(FS) {
  const orig = {};
  for (const name of ["write", "close", "open", "mkdir", "rmdir", "unlink", "rename", "truncate", "ftruncate"]) {
    orig[name] = FS[name];
  }
  FS.write = function (stream, buffer, offset, length, position, canOwn) {
    if (length > 0 && isBoardPath(stream.path)) {
      const node = stream.node;
      const size = node.usedBytes || 0;
      let pos = position !== undefined ? position : stream.position;
      if (stream.flags & O_APPEND) pos = size;
      const grown = Math.max(size, pos + length);
      if (grown > size && used(FS) - blocks(size) + blocks(grown) > capacity) {
        throw new FS.ErrnoError(ENOSPC);
      }
      stream.fbWritten = true;
      dirty = true;
    }
    return orig.write.call(FS, stream, buffer, offset, length, position, canOwn);
  };
  FS.close = function (stream) {
    if (stream.fbWritten && corrupt !== null && corrupt.test(stream.path)) {
      const node = stream.node;
      const size = node.usedBytes || 0;
      if (size > 0 && node.contents) node.contents[size >> 1] ^= 0xff;
    }
    return orig.close.call(FS, stream);
  };
  FS.open = function (p, flags, mode) {
    if (typeof flags === "number" && flags & (O_CREAT | O_TRUNC) && isBoardPath(p)) dirty = true;
    return orig.open.call(FS, p, flags, mode);
  };
  for (const name of ["mkdir", "rmdir", "unlink", "rename", "truncate"]) {
    FS[name] = function (...args) {
      if (args.some(isBoardPath)) dirty = true;
      return orig[name].apply(FS, args);
    };
  }
  FS.ftruncate = function (...args) {
    dirty = true;
    return orig.ftruncate.apply(FS, args);
  };
}

const jsModule = {
  result: (s) => {
    result = String(s);
  },
  reset: (kind) => {
    if (resetKind === null) {
      resetKind = String(kind);
      resetAt = out.length;
    }
  },
  used: () => used(mp.FS),
  capacity: () => capacity,
  urandom: (n) => Buffer.from(webcrypto.getRandomValues(new Uint8Array(Number(n)))).toString("hex"),
};

async function load(req) {
  const t0 = performance.now();
  mp = null;
  const vm = await loadMicroPython({
    heapsize: opts.heapsize,
    pystack: opts.pystack,
    linebuffer: false,
    stdout: (data) => {
      for (const b of data) out.push(b);
    },
    stderr: (data) => {
      for (const b of data) out.push(b);
    },
  });
  const FS = vm.FS;
  for (const dir of ["/home/web_user", "/home", "/tmp"]) {
    if (FS.analyzePath(dir).exists) FS.rmdir(dir);
  }
  for (const dir of req.dirs ?? []) mkdirs(FS, dir);
  for (const [p, b64] of Object.entries(req.files ?? {})) {
    mkdirs(FS, path.posix.dirname(p));
    FS.writeFile(p, Buffer.from(b64, "base64"));
  }
  mkdirs(FS, HIDDEN_DIR);
  for (const [name, b64] of Object.entries(req.hidden ?? {})) {
    FS.writeFile(`${HIDDEN_DIR}/${name}`, Buffer.from(b64, "base64"));
  }
  capacity = Number(req.capacity ?? capacity);
  corrupt = typeof req.corrupt === "string" ? new RegExp(`^(?:${req.corrupt})$`, "s") : null;
  installHooks(FS);
  vm.registerJsModule("_fbjs", jsModule);
  mp = vm;
  dirty = false;
  return { ok: true, load_ms: performance.now() - t0 };
}

function takeOut() {
  const data = Buffer.from(out).toString("base64");
  out = [];
  return data;
}

function begin() {
  out = [];
  resetKind = null;
  resetAt = 0;
  result = null;
}

function exec(req) {
  if (typeof req.code !== "string") return { ok: false, error: "exec: code must be a string" };
  begin();
  try {
    mp.runPython(req.code);
    return { ok: true, result, reset: resetKind, out_b64: takeOut() };
  } catch (e) {
    if (e && e.constructor && e.constructor.name === "PythonError") {
      return { ok: false, result, reset: resetKind, type: String(e.type), error: String(e.message), out_b64: takeOut() };
    }
    return { ok: false, fatal: true, type: "JavaScriptError", error: String(e && e.stack ? e.stack : e), out_b64: takeOut() };
  }
}

function feed(req) {
  const data = Buffer.from(req.data_b64 ?? "", "base64");
  begin();
  let consumed = 0;
  let ret = 0;
  try {
    while (consumed < data.length) {
      ret = mp.replProcessChar(data[consumed]);
      consumed += 1;
      if (resetKind !== null) {
        out = out.slice(0, resetAt);
        break;
      }
      if (ret !== 0) break;
    }
  } catch (e) {
    return { ok: false, fatal: true, consumed, type: "JavaScriptError", error: String(e && e.stack ? e.stack : e), out_b64: takeOut() };
  }
  return { ok: true, consumed, ret, reset: resetKind, out_b64: takeOut() };
}

function files() {
  const FS = mp.FS;
  const found = {};
  const dirs = [];
  walk(FS, (p, node, isDir) => {
    if (isDir) dirs.push(p);
    else found[p] = Buffer.from(FS.readFile(p)).toString("base64");
  });
  dirty = false;
  return { ok: true, files: found, dirs };
}

// The banner of this build, which the board replaces with its own.
const pingInfo = await (async () => {
  const t0 = performance.now();
  await load({});
  const loadMs = performance.now() - t0;
  begin();
  mp.replInit();
  const text = Buffer.from(out).toString("latin1");
  out = [];
  const banner = (/MicroPython [^\r\n]*/.exec(text) || [""])[0];
  const version = (/^MicroPython v(\d+\.\d+\.\d+)/.exec(banner) || ["", ""])[1];
  return { ok: true, version, load_ms: loadMs, banner, heapsize: opts.heapsize };
})();

async function handle(req) {
  switch (req.op) {
    case "ping":
      return pingInfo;
    case "load":
      return await load(req);
    case "exec":
      return exec(req);
    case "repl_init":
      begin();
      mp.replInit();
      return { ok: true, out_b64: takeOut() };
    case "feed":
      return feed(req);
    case "files":
      return files();
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
    process.stdout.write(JSON.stringify({ ok: false, error: `bad request line: ${e}` }) + "\n");
    continue;
  }
  let res;
  if (req.op === "quit") {
    res = { ok: true };
  } else {
    try {
      res = await handle(req);
    } catch (e) {
      res = { ok: false, fatal: true, error: String(e && e.stack ? e.stack : e) };
    }
  }
  res.dirty = dirty;
  if (req.id !== undefined) res.id = req.id;
  process.stdout.write(JSON.stringify(res) + "\n");
  if (req.op === "quit") break;
}
process.exit(0);
