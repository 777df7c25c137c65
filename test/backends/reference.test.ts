// The reference backend must run in a browser: neither it nor anything it imports (transitively)
// may import a Node module or touch Node globals.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { referenceBackend } from "../../src/backends/reference/index.js";

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, "package.json not found above the test file");
    dir = up;
  }
  return dir;
}

const IMPORT =
  /(?:import|export)\s[^;]*?from\s*"([^"]+)"|import\(\s*"([^"]+)"\s*\)|require\(\s*"([^"]+)"\s*\)/g;
const NODE_GLOBALS = /\b(process|Buffer|__dirname|__filename|require)\b\s*[.([]/;

test("the reference backend imports nothing from Node, transitively", () => {
  const root = repoRoot();
  const entry = join(root, "src/backends/reference/index.ts");
  const seen = new Set<string>();
  const queue = [entry];
  const builtins = new Set(builtinModules);
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, "utf8");
    const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    const where = relative(root, file);
    assert.doesNotMatch(code, NODE_GLOBALS, `${where} uses a Node global`);
    for (const m of code.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3];
      assert.ok(spec.startsWith("."), `${where} imports the package "${spec}"`);
      assert.ok(!spec.startsWith("node:") && !builtins.has(spec), `${where} imports Node's "${spec}"`);
      queue.push(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
    }
  }
  // The walk really followed imports into core (half-float conversions, errors).
  assert.ok(seen.has(join(root, "src/core/half.ts")), [...seen].join(", "));
  assert.ok(seen.size >= 8);
});

test("the reference backend implements every kernel as a function", () => {
  const kernels = Object.entries(referenceBackend).filter(([k]) => k !== "name");
  assert.ok(kernels.length >= 18, `${kernels.length} kernels`);
  for (const [name, fn] of kernels) assert.equal(typeof fn, "function", name);
  assert.equal(referenceBackend.name, "reference");
});
