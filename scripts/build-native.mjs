// Builds the optional native addon (native/, binding.gyp) with node-gyp at install time.
// Never fails the install: without a compiler, node-gyp or OpenBLAS it prints one line and exits 0,
// and glassbox runs on the reference backend. Works offline: node-gyp is pointed at the local Node
// headers (--nodedir) when they are installed. Skips the build when the addon is newer than its
// sources; `--force` rebuilds.
//
// Environment: GLASSBOX_SKIP_NATIVE=1 skips the build; GLASSBOX_CBLAS_INCLUDE=<dir> (the folder
// holding cblas.h) and GLASSBOX_BLAS_LIB=<name> (linked as -l<name>, default openblas) override the
// OpenBLAS lookup.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const addon = join(root, "build", "Release", "glassbox_native.node");
const logFile = join(root, "build", "native-build.log");
const force = process.argv.includes("--force");

function say(line) {
  console.log(`glassbox: ${line}`);
}

function fallback(reason) {
  say(`native backend not built (${reason}); glassbox will use the reference backend.`);
  process.exit(0);
}

function newestSource() {
  const files = [
    join(root, "binding.gyp"),
    ...readdirSync(join(root, "native")).map((f) => join(root, "native", f)),
  ];
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

function findNodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  candidates.push(
    resolve(process.execPath, "../../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"),
  );
  const npm = spawnSync("npm", ["prefix", "-g"], { encoding: "utf8" });
  if (npm.status === 0) {
    candidates.push(join(npm.stdout.trim(), "lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"));
  }
  return candidates.find((c) => c && existsSync(c));
}

function findNodeDir() {
  const dirs = [resolve(process.execPath, "../.."), "/usr", "/usr/local"];
  return dirs.find((d) => existsSync(join(d, "include", "node", "node_api.h")));
}

function findCblasInclude() {
  const override = process.env.GLASSBOX_CBLAS_INCLUDE;
  const dirs = override
    ? [override]
    : [
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu",
        "/usr/include/openblas",
        "/usr/include",
        "/usr/local/include",
        "/opt/homebrew/opt/openblas/include",
      ];
  return dirs.find((d) => existsSync(join(d, "cblas.h")));
}

/** The most telling line of a failed build log. */
function reasonFrom(log) {
  const lines = log.split("\n").map((l) => l.trim());
  const hit =
    lines.find((l) => /fatal error|cannot find -l|undefined reference/.test(l)) ??
    lines.find((l) => /\berror\b/i.test(l) && !l.startsWith("gyp ERR! stack"));
  return (hit ?? "node-gyp failed").slice(0, 160);
}

function main() {
  if (!existsSync(join(root, "binding.gyp"))) return;
  if (process.env.GLASSBOX_SKIP_NATIVE === "1") fallback("GLASSBOX_SKIP_NATIVE=1");
  if (!force && existsSync(addon) && statSync(addon).mtimeMs >= newestSource()) {
    say("native backend up to date (build/Release/glassbox_native.node; --force rebuilds)");
    return;
  }
  const gyp = findNodeGyp();
  if (!gyp) fallback("node-gyp not found");
  const cblas = findCblasInclude();
  if (!cblas) fallback("OpenBLAS headers (cblas.h) not found: install libopenblas-dev");
  const args = [
    gyp,
    "rebuild",
    `--cblas_include=${cblas}`,
    `--blas_lib=${process.env.GLASSBOX_BLAS_LIB ?? "openblas"}`,
  ];
  const nodedir = findNodeDir();
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const log = `${r.stdout ?? ""}${r.stderr ?? ""}${r.error ? String(r.error) : ""}`;
  mkdirSync(dirname(logFile), { recursive: true });
  writeFileSync(logFile, log);
  if (r.status !== 0 || !existsSync(addon)) fallback(`${reasonFrom(log)}; full log: build/native-build.log`);
  try {
    createRequire(import.meta.url)(addon).info();
  } catch (e) {
    fallback(`built but does not load: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
  }
  say("native backend built (build/Release/glassbox_native.node)");
}

try {
  main();
} catch (e) {
  fallback(e instanceof Error ? e.message : String(e));
}
