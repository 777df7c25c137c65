/**
 * The fortune(6) cookie collections of Debian's `fortunes` and `fortunes-min`: quotations,
 * jokes, definitions, verse. Offensive sets (`off/`) and rot13 sets are skipped, and so is
 * `ascii-art` (pictures, not prose), as are single entries that look like pictures or columns
 * (`isProse`). Documents are runs of consecutive fortunes of one set,
 * about 4 KB each.
 */
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chunkEntries, readStrfileHeader, splitFortunes } from "../fortune.js";
import type { CorpusDocument, CorpusSource } from "../source.js";

const SKIPPED_SETS = new Set(["ascii-art"]);

/**
 * Pictures and column layouts are not prose: an entry is dropped when fewer than half its
 * non-space characters are letters, or when two or more of its lines have a wide gap
 * (three or more spaces, or a tab) between words.
 */
export function isProse(entry: string): boolean {
  const visible = entry.replace(/\s/g, "");
  const letters = visible.replace(/[^\p{L}]/gu, "");
  if (visible.length === 0 || letters.length < visible.length / 2) return false;
  const gapped = entry.split("\n").filter((l) => /\S( {3,}|\t)\S/.test(l.trim()));
  return gapped.length < 2;
}
const CHUNK_CHARS = 4000;

function setDocuments(dir: string): CorpusDocument[] {
  if (!existsSync(dir)) return [];
  const docs: CorpusDocument[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    // Cookie files have no extension; `.u8` names are symlinks to them, `.dat` their indexes.
    if (name.includes(".") || SKIPPED_SETS.has(name) || !lstatSync(path).isFile()) continue;
    const datPath = `${path}.dat`;
    if (!existsSync(datPath)) continue;
    const header = readStrfileHeader(readFileSync(datPath), `fortunes:${name}`);
    if (header.rotated) continue;
    const entries = splitFortunes(readFileSync(path, "utf8"), header.delimiter).filter(isProse);
    chunkEntries(entries, CHUNK_CHARS).forEach((text, i) => {
      docs.push({ id: `fortunes/${name}/${String(i + 1).padStart(3, "0")}`, source: "fortunes", text });
    });
  }
  return docs;
}

export const fortunes: CorpusSource = {
  name: "fortunes",
  description: "fortune(6) cookie files: quotations, jokes, definitions, verse",
  licence: "BSD-4-clause (fortune-mod; collected quotations)",
  packages: [
    { registry: "debian", name: "fortunes", version: "1:1.99.1-7.3" },
    { registry: "debian", name: "fortunes-min", version: "1:1.99.1-7.3" },
  ],
  async extract(roots) {
    // The `off/` subdirectory (offensive sets, from fortunes-off) is never descended into.
    return roots.flatMap((root) => setDocuments(join(root, "usr/share/games/fortunes")));
  },
};
