// Runs a MicroPython benchmark module inside the npm MicroPython WebAssembly VM.
//
//   node bench/mp_heap.mjs [repo_root] [heap_bytes] [program] < module.py
//
// Writes the repository's protocol/*.py to /bench/protocol and the module read from stdin
// to /bench/amtomat_vm_bench.py in the VM filesystem, then runs program (by default:
// import the module and call its main()). The VM's stdout goes to stdout. A Python exception is printed (without the
// VM's JavaScript stack) to stderr and the exit status is 1.
// Used by bench/protocol_micropython.py.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(process.argv[2] ?? path.join(here, ".."));
const heapsize = Number(process.argv[3] ?? 1048576);
const vmPath = path.join(
  root,
  "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs",
);
const { loadMicroPython } = await import(pathToFileURL(vmPath).href);

const bench = fs.readFileSync(0, "utf8");
const mp = await loadMicroPython({
  heapsize,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

mp.FS.mkdir("/bench");
mp.FS.mkdir("/bench/protocol");
const src = path.join(root, "protocol");
for (const name of fs.readdirSync(src).sort()) {
  if (name.endsWith(".py")) {
    mp.FS.writeFile("/bench/protocol/" + name, fs.readFileSync(path.join(src, name)));
  }
}

mp.FS.writeFile("/bench/amtomat_vm_bench.py", bench);

try {
  mp.runPython(
    process.argv[4] ??
      "import sys\nsys.path.insert(0, '/bench')\nimport amtomat_vm_bench\namtomat_vm_bench.main()\n",
  );
} catch (error) {
  if (error && error.name === "PythonError") {
    process.stderr.write(String(error.message) + "\n");
    process.exit(1);
  }
  throw error;
}
