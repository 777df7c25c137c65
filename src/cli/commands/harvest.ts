/**
 * `glassbox harvest --model DIR --sites a,b --data FILE --out STORE [...]`: runs the model over a
 * dataset and stores the activations of the given sites in an activation store (docs/activations.md),
 * continuing an interrupted harvest of the same model, sites, dtype and data. A progress bar shows
 * on a TTY; `--json` prints one object describing the store instead of a summary.
 */
import { basename, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import {
  fingerprintFile,
  formatFromName,
  readDocuments,
  tokenizeDocuments,
} from "../../activations/documents.js";
import {
  gemma3Harvester,
  type HarvestResult,
  harvestToStore,
  modelIdentity,
} from "../../activations/harvest.js";
import { STORE_DTYPES, type StoreDType } from "../../activations/manifest.js";
import { maskingRules } from "../../activations/sequences.js";
import { defaultBackend } from "../../backends/index.js";
import { UsageError } from "../../core/errors.js";
import { ChatTemplate } from "../../io/chat.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { loadGemma3Config } from "../../model/gemma3/config.js";
import { loadGemma3 } from "../../model/gemma3/model.js";
import { parseSite } from "../../model/gemma3/sites.js";

interface HarvestFlags {
  model: string;
  tokenizer?: string;
  sites: string;
  data: string;
  out: string;
  tokens?: string;
  dtype: string;
  context: string;
  batch: string;
  shardTokens: string;
  chat?: boolean;
  textField: string;
  json?: boolean;
}

/** Parses a positive integer flag. */
export function positiveInt(value: string, flag: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) <= 0 || !Number.isSafeInteger(Number(value)))
    throw new UsageError(`must be a positive integer, got ${JSON.stringify(value)}`, flag);
  return Number(value);
}

export function registerHarvest(program: Command): void {
  program
    .command("harvest")
    .description("store the activations of hook sites over a dataset (resumes an interrupted harvest)")
    .requiredOption("--model <dir>", "Gemma 3 checkpoint directory")
    .option("--tokenizer <dir>", "directory with tokenizer.json (default: --model)")
    .requiredOption("--sites <list>", "comma-separated sites, e.g. blocks.3.resid_post,blocks.3.mlp_out")
    .requiredOption(
      "--data <file>",
      "plain text (blank-line separated), JSONL with a text field, or chat JSONL",
    )
    .requiredOption("--out <dir>", "activation store folder")
    .option("--tokens <n>", "stop once the store holds n tokens (default: the whole dataset)")
    .option("--dtype <dtype>", `stored dtype: ${STORE_DTYPES.join(", ")}`, "f32")
    .option("--context <n>", "tokens per sequence (longer documents are split)", "256")
    .option("--batch <n>", "sequences per forward pass", "8")
    .option("--shard-tokens <n>", "tokens per shard (at least; shards end at a batch boundary)", "16384")
    .option("--chat", 'the data is chat JSONL ({"messages": [...]}) rendered with the model\'s template')
    .option("--text-field <name>", "JSONL field holding the text", "text")
    .option("--json", "print one JSON object")
    .action(async (flags: HarvestFlags) => {
      const r = await runHarvest(flags);
      process.stdout.write(
        flags.json ? `${JSON.stringify(harvestJson(flags.out, r))}\n` : summary(flags.out, r),
      );
    });
}

export function harvestJson(out: string, r: HarvestResult): Record<string, unknown> {
  const m = r.manifest;
  return {
    store: resolve(out),
    model: m.model,
    sites: m.sites,
    dtype: m.dtype,
    tokens: m.tokens,
    added: r.added,
    resumed_from: r.resumedFrom,
    shards: m.shards.length,
    complete: m.complete,
    content_hash: m.content_hash,
    seconds: r.seconds,
    tokens_per_second: r.seconds > 0 ? r.added / r.seconds : null,
  };
}

function summary(out: string, r: HarvestResult): string {
  const m = r.manifest;
  const rate = r.seconds > 0 ? `${Math.round(r.added / r.seconds)} tokens/s` : "-";
  const lines = [
    `store     ${resolve(out)}`,
    `model     ${m.model.id} (${m.model.hash.slice(0, 12)})`,
    `sites     ${m.sites.map((s) => `${s.name} [${s.d}]`).join(", ")}`,
    `tokens    ${m.tokens} in ${m.shards.length} shards (${m.dtype})${r.resumedFrom > 0 ? `, resumed at ${r.resumedFrom}` : ""}`,
    `added     ${r.added} in ${r.seconds.toFixed(1)} s (${rate})`,
    `complete  ${m.complete ? "yes" : "no"}`,
    `content   ${m.content_hash}`,
  ];
  return `${lines.join("\n")}\n`;
}

export async function runHarvest(flags: HarvestFlags): Promise<HarvestResult> {
  const dtype = STORE_DTYPES.find((d) => d === flags.dtype);
  if (dtype === undefined) throw new UsageError(`must be one of ${STORE_DTYPES.join(", ")}`, "--dtype");
  const context = positiveInt(flags.context, "--context");
  if (context < 2) throw new UsageError("must be at least 2", "--context");
  const batch = positiveInt(flags.batch, "--batch");
  const shardTokens = positiveInt(flags.shardTokens, "--shard-tokens");
  const tokens = flags.tokens === undefined ? undefined : positiveInt(flags.tokens, "--tokens");
  const siteNames = flags.sites
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (siteNames.length === 0) throw new UsageError("no sites given", "--sites");
  // Check everything cheap before reading weights.
  const config = loadGemma3Config(flags.model);
  for (const s of siteNames) parseSite(s, config);
  if (context > config.maxPositionEmbeddings)
    throw new UsageError(`the model's context is ${config.maxPositionEmbeddings} tokens`, "--context");
  const format = formatFromName(flags.data, flags.chat === true);
  const file = await fingerprintFile(flags.data);
  const tokenizer = Tokenizer.fromDir(flags.tokenizer ?? flags.model);
  const chat = format === "chat" ? ChatTemplate.fromDir(flags.tokenizer ?? flags.model, tokenizer) : null;
  const model = loadGemma3(flags.model, defaultBackend());
  const harvester = gemma3Harvester(model, await modelIdentity(flags.model), siteNames);
  const dataFile = { path: flags.data, format, textField: flags.textField };
  const bar =
    process.stderr.isTTY && !flags.json
      ? new SingleBar({
          format:
            "harvest [{bar}] {percentage}% | {value}/{total} tokens | {rate} tokens/s | {duration_formatted}",
          stream: process.stderr,
          hideCursor: true,
        })
      : null;
  let started = false;
  try {
    return await harvestToStore(flags.out, {
      model: harvester,
      documents: () => tokenizeDocuments(readDocuments(dataFile), tokenizer, chat),
      context,
      bos: tokenizer.special.bos,
      rules: maskingRules(format, tokenizer.special),
      longDocuments: format === "chat" ? "truncate" : "split",
      batch,
      shardTokens,
      dtype: dtype as StoreDType,
      ...(tokens === undefined ? {} : { tokens }),
      dataset: {
        file: basename(flags.data),
        sha256: file.sha256,
        bytes: file.bytes,
        format,
        ...(format === "jsonl" ? { text_field: flags.textField } : {}),
      },
      onProgress: (p) => {
        if (bar === null) return;
        const rate = p.seconds > 0 ? Math.round(p.added / p.seconds) : 0;
        if (!started) {
          bar.start(p.target ?? p.tokens, p.tokens, { rate });
          started = true;
        }
        if (p.target === undefined) bar.setTotal(p.tokens);
        bar.update(p.tokens, { rate });
      },
    });
  } finally {
    if (started) bar?.stop();
  }
}
