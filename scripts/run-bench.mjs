// Runs every compiled benchmark (dist/bench/**/*.bench.js) one after another, so their figures come
// from the same build and the same moment. Arguments that start with `--` (e.g. --json, --rounds=5)
// are passed to each benchmark; other arguments filter by path substring, e.g.
// `node scripts/run-bench.mjs matmul`. With --json the outputs are combined into one object keyed
// by benchmark name.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".bench.js")) out.push(p);
  }
  return out;
}

const flags = process.argv.slice(2).filter((a) => a.startsWith("--"));
const filters = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const json = flags.includes("--json");
let files = [];
try {
  files = find("dist/bench").filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)));
} catch {
  // no dist/bench yet
}
if (files.length === 0) {
  console.error("run-bench: no benchmarks found under dist/bench (did `npm run build` run?)");
  process.exit(1);
}

const combined = {};
let failed = 0;
for (const file of files) {
  const name = basename(file, ".bench.js");
  if (!json) console.log(`\n== ${name} ==`);
  const r = spawnSync(process.execPath, ["--expose-gc", file, ...flags], {
    stdio: json ? ["ignore", "pipe", "inherit"] : "inherit",
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    failed++;
    console.error(`run-bench: ${name} exited with ${r.status ?? r.signal}`);
    continue;
  }
  if (json) combined[name] = JSON.parse(r.stdout);
}
if (json) console.log(JSON.stringify(combined, null, 2));
process.exit(failed ? 1 : 0);
