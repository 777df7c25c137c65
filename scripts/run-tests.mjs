// Runs every compiled test file (dist/test/**/*.test.js) with Node's built-in test runner.
// Node 20's `--test` takes no globs, so the files are listed here. Extra arguments filter by path
// substring, e.g. `node scripts/run-tests.mjs safetensors`.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find("dist/test").filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error("run-tests: no test files found under dist/test (did `npm run build` run?)");
  process.exit(1);
}
const r = spawnSync(process.execPath, ["--expose-gc", "--test", "--test-reporter=spec", ...files], {
  stdio: "inherit",
  // Native op outputs start as NaN instead of whatever memory they reuse (src/backends/native).
  env: { ...process.env, GLASSBOX_POISON_OUTPUTS: "1" },
});
process.exit(r.status ?? 1);
