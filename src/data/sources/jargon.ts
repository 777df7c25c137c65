/**
 * The Jargon File 4.4.7 (Debian `jargon-text`): hacker slang glossary entries as prose, in
 * file order, grouped into documents of about 8 KB. Front matter and appendices are not used.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { DataError } from "../../core/errors.js";
import { chunkEntries } from "../fortune.js";
import { parseJargon } from "../jargon.js";
import type { CorpusSource } from "../source.js";

const CHUNK_CHARS = 8000;

export const jargon: CorpusSource = {
  name: "jargon",
  description: "The Jargon File 4.4.7: glossary of hacker slang",
  licence: "public domain",
  packages: [{ registry: "debian", name: "jargon-text", version: "4.4.7-4.1" }],
  async extract([root]) {
    const dir = join(root!, "usr/share/doc/jargon-text");
    const gz = join(dir, "jargon.txt.gz");
    const plain = join(dir, "jargon.txt");
    const text = existsSync(gz)
      ? gunzipSync(readFileSync(gz)).toString("utf8")
      : existsSync(plain)
        ? readFileSync(plain, "utf8")
        : null;
    if (text === null) throw new DataError(`no jargon.txt(.gz) in ${dir}`, "jargon");
    const entries = parseJargon(text);
    if (entries.length < 100) throw new DataError(`only ${entries.length} glossary entries found`, "jargon");
    return chunkEntries(
      entries.map((e) => e.text),
      CHUNK_CHARS,
    ).map((t, i) => ({ id: `jargon/${String(i + 1).padStart(4, "0")}`, source: "jargon", text: t }));
  },
};
