/**
 * `glassbox sites --model DIR`: every hook site of the model with its shape and Hugging Face module
 * name, from config.json alone (no weights are read). `batch`, `seq` and `keys` depend on the input
 * and print as names. `--json`: `{"sites": [{"name", "axes", "shape", "hf_module", "description"}]}`
 * with null for the input-dependent sizes.
 */
import type { Command } from "commander";
import { loadGemma3Config } from "../../model/gemma3/config.js";
import { type Axis, listSites } from "../../model/gemma3/sites.js";
import { jsonLine } from "../model-input.js";

interface SitesFlags {
  model: string;
  json?: boolean;
}

export interface SiteRow {
  readonly name: string;
  readonly axes: readonly Axis[];
  /** Sizes of the axes; null for batch, seq and keys. */
  readonly shape: (number | null)[];
  readonly hf_module: string | null;
  readonly description: string;
}

const INPUT_AXES: ReadonlySet<Axis> = new Set(["batch", "seq", "keys"]);

export function registerSites(program: Command): void {
  program
    .command("sites")
    .description("list the model's hook sites with their shapes (reads config.json only)")
    .requiredOption("--model <dir>", "Gemma 3 checkpoint directory (or its config.json)")
    .option("--json", "print one JSON object")
    .action((flags: SitesFlags) => {
      const rows = siteRows(flags.model);
      process.stdout.write(flags.json ? jsonLine({ sites: rows }) : sitesTable(rows));
    });
}

export function siteRows(model: string): SiteRow[] {
  const config = loadGemma3Config(model);
  return listSites(config).map((site) => {
    const sizes = site.shape(config, 1, 1, 1);
    return {
      name: site.name,
      axes: site.axes,
      shape: site.axes.map((a, i) => (INPUT_AXES.has(a) ? null : sizes[i])),
      hf_module: site.hfModuleName(config),
      description: site.description,
    };
  });
}

function sitesTable(rows: readonly SiteRow[]): string {
  const cells = rows.map((r) => [
    r.name,
    `[${r.axes.map((a, i) => (r.shape[i] === null ? a : `${a}=${r.shape[i]}`)).join(", ")}]`,
    r.hf_module ?? "-",
  ]);
  const all = [["site", "shape", "hf module"], ...cells];
  const widths = all[0].map((_, c) => Math.max(...all.map((row) => row[c].length)));
  const lines = all.map((row) =>
    row
      .map((cell, c) => cell.padEnd(widths[c]))
      .join("  ")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n\n${rows.length} sites\n`;
}
