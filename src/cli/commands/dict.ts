/**
 * `glassbox dict`: sparse dictionaries on disk.
 * - `dict info DIR`: architecture, activation, hook points, d_in/d_out, width, layers, L0, dtype
 *   (config and tensor headers only).
 * - `dict list ROOT`: what a local copy of a Gemma Scope 2 repository holds.
 * - `dict apply --dict DIR --input IN --output OUT`: IN holds `x` [n, d_in] ([layers, n, d_in] for a
 *   CLT); OUT gets `acts` [.., width] (dense f32) and `recon` [.., d_out], written atomically.
 * Every subcommand takes `--json` (one object on stdout).
 */
import type { Command } from "commander";
import { defaultBackend } from "../../backends/index.js";
import { DictionaryError, UsageError } from "../../core/errors.js";
import { cast } from "../../core/ops/cast.js";
import { formatShape } from "../../core/tensor.js";
import type { DictionaryInfo } from "../../dictionaries/formats/common.js";
import { inspectDictionary, type LoadOptions, loadDictionary } from "../../dictionaries/load.js";
import { listRepository, type RepositoryListing } from "../../dictionaries/repository.js";
import { SafetensorsFile } from "../../io/safetensors.js";
import { writeSafetensors } from "../../io/safetensors-write.js";
import { tensorToWrite } from "../../io/to-tensor.js";

interface JsonFlag {
  json?: boolean;
}

export interface Gs1Flags {
  architecture?: string;
  hookIn?: string;
  hookOut?: string;
}

interface ApplyFlags extends JsonFlag, Gs1Flags {
  dict: string;
  input: string;
  output: string;
}

export function gs1Options(flags: Gs1Flags): LoadOptions {
  return {
    gemmaScope1: {
      ...(flags.architecture === undefined ? {} : { architecture: flags.architecture }),
      ...(flags.hookIn === undefined ? {} : { hookIn: flags.hookIn }),
      // An SAE writes where it reads: --hook-out defaults to --hook-in.
      ...(flags.hookOut === undefined && flags.hookIn === undefined
        ? {}
        : { hookOut: flags.hookOut ?? flags.hookIn }),
    },
  };
}

export function addGs1Options(c: Command): Command {
  return c
    .option("--architecture <name>", "Gemma Scope 1 files only: sae (default) or transcoder")
    .option("--hook-in <name>", "Gemma Scope 1 files only: the hook point it reads")
    .option("--hook-out <name>", "Gemma Scope 1 files only: the hook point it writes (default: --hook-in)");
}

export function registerDict(program: Command): void {
  const dict = program
    .command("dict")
    .description("sparse dictionaries (Gemma Scope 2, Gemma Scope 1, SAELens)");
  addGs1Options(
    dict
      .command("info")
      .description("describe a dictionary folder (reads only its config and tensor headers)")
      .argument("<dir>", "dictionary folder (or a Gemma Scope 1 params.npz)")
      .option("--json", "print one JSON object"),
  ).action((dir: string, flags: JsonFlag & Gs1Flags) => {
    const info = inspectDictionary(dir, gs1Options(flags));
    process.stdout.write(flags.json ? `${JSON.stringify(info)}\n` : infoText(info));
  });
  dict
    .command("list")
    .description("list the dictionaries in a local copy of a Gemma Scope 2 repository")
    .argument("<root>", "repository folder (holding resid_post/, transcoder/, clt/, ...)")
    .option("--json", "print one JSON object")
    .action((root: string, flags: JsonFlag) => {
      const listing = listRepository(root);
      process.stdout.write(flags.json ? `${JSON.stringify(listing)}\n` : listText(listing));
    });
  addGs1Options(
    dict
      .command("apply")
      .description("encode and reconstruct the activations in a safetensors file")
      .requiredOption("--dict <dir>", "dictionary folder")
      .requiredOption("--input <file>", "safetensors file with x [n, d_in] (CLT: [layers, n, d_in])")
      .requiredOption("--output <file>", "safetensors file to write acts and recon to")
      .option("--json", "print a JSON summary"),
  ).action(async (flags: ApplyFlags) => {
    const summary = await dictApply(flags);
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : applyText(summary));
  });
}

export interface ApplySummary {
  readonly dictionary: string;
  readonly input: string;
  readonly output: string;
  readonly rows: number;
  readonly width: number;
  /** Mean number of active features per row (per layer and token for a CLT). */
  readonly meanL0: number;
  readonly acts: readonly number[];
  readonly recon: readonly number[];
}

export async function dictApply(flags: ApplyFlags): Promise<ApplySummary> {
  const backend = defaultBackend();
  const d = loadDictionary(flags.dict, backend, gs1Options(flags));
  const { dIn, layers } = d.spec;
  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(flags.input);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e), "--input");
  }
  let x: ReturnType<SafetensorsFile["readTensorSync"]>;
  try {
    if (!file.has("x"))
      throw new DictionaryError(`no tensor "x" (tensors: ${file.names().join(", ") || "none"})`, flags.input);
    x = file.readTensorSync("x", backend);
  } finally {
    file.close();
  }
  if (x.dtype === "i32")
    throw new DictionaryError(`tensor "x" must be floating point, got ${x.dtype}`, flags.input);
  const want = layers === null ? `[n, ${dIn}]` : `[${layers}, n, ${dIn}]`;
  const rank = layers === null ? 2 : 3;
  if (x.rank !== rank || x.shape[rank - 1] !== dIn || (layers !== null && x.shape[0] !== layers)) {
    throw new DictionaryError(
      `tensor "x" must be ${want} for this dictionary, got ${formatShape(x.shape)}`,
      flags.input,
    );
  }
  const x32 = cast(x, "f32");
  const acts = d.encode(x32);
  const recon = d.decode(acts, x32);
  const dense = acts.toDense();
  await writeSafetensors(flags.output, { acts: tensorToWrite(dense), recon: tensorToWrite(recon) });
  return {
    dictionary: flags.dict,
    input: flags.input,
    output: flags.output,
    rows: acts.rows,
    width: acts.width,
    meanL0: acts.rows === 0 ? 0 : acts.nnz / acts.rows,
    acts: dense.shape,
    recon: recon.shape,
  };
}

function applyText(s: ApplySummary): string {
  return (
    `${s.output}: acts ${formatShape(s.acts)}, recon ${formatShape(s.recon)}; ` +
    `mean L0 ${s.meanL0.toFixed(2)} of ${s.width} features over ${s.rows} rows\n`
  );
}

function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function infoText(i: DictionaryInfo): string {
  const rows: [string, string][] = [
    ["path", i.path],
    ["format", i.format],
    ["architecture", i.architecture + (i.skip ? " (affine skip connection)" : "")],
    ["activation", i.activation],
    ["reads", i.hookIn ?? "(not recorded)"],
    ["writes", i.hookOut ?? "(not recorded)"],
    ["d_in", String(i.dIn)],
    ["d_out", String(i.dOut)],
    ["width", i.layers === null ? String(i.width) : `${i.width} per layer x ${i.layers} layers`],
    ["L0 (config)", i.l0 === null ? "-" : String(i.l0)],
    ["dtype", i.dtype],
    ["files", `${i.files.length} (${humanBytes(i.bytes)} of parameters)`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return `${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n")}\n`;
}

function listText(l: RepositoryListing): string {
  const head = ["folder", "type", "layer", "width", "L0", "d_in", "dtype"];
  const rows = l.entries.map((e) => [
    e.folder,
    e.architecture,
    e.layer === null ? (e.layers === null ? "-" : `0-${e.layers - 1}`) : String(e.layer),
    String(e.width),
    `${e.l0Label ?? "-"}${e.l0 === null ? "" : ` (${e.l0})`}`,
    String(e.dIn),
    e.dtype,
  ]);
  const all = [head, ...rows];
  const widths = head.map((_, c) => Math.max(...all.map((r) => r[c].length)));
  const lines = all.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]))
      .join("  ")
      .trimEnd(),
  );
  lines.push("", `${l.entries.length} dictionar${l.entries.length === 1 ? "y" : "ies"} in ${l.root}`);
  for (const p of l.problems) lines.push(`skipped ${p.folder}: ${p.message}`);
  return `${lines.join("\n")}\n`;
}
