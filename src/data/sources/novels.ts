/**
 * Novels shipped as R data: Jane Austen's six novels (`janeaustenr`, one character vector of
 * lines per book) and Moby Dick (`tokenizers::mobydick`, one string with CRLF line ends and the
 * Project Gutenberg header and licence). One document per chapter: hard wrapping undone,
 * Gutenberg boilerplate, title pages, volume headings and end matter dropped.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DataError } from "../../core/errors.js";
import { asStrings, type RValue, readLazyLoadDb, readRData } from "../rds.js";
import type { CorpusDocument, CorpusSource } from "../source.js";
import { type ChapterRules, splitChapters, stripGutenberg, stripUnderscoreItalics, unwrap } from "../text.js";

/** The data objects of an installed R package: its lazy-load database, or else its `.rda` files. */
export function loadRPackageData(packageDir: string, subject: string): Map<string, RValue> {
  const dataDir = join(packageDir, "data");
  const rdx = join(dataDir, "Rdata.rdx");
  if (existsSync(rdx))
    return readLazyLoadDb(readFileSync(rdx), readFileSync(join(dataDir, "Rdata.rdb")), subject);
  if (!existsSync(dataDir)) throw new DataError(`no data directory in ${packageDir}`, subject);
  const out = new Map<string, RValue>();
  for (const f of readdirSync(dataDir).sort())
    if (/\.(rda|RData)$/i.test(f))
      for (const [k, v] of readRData(readFileSync(join(dataDir, f)), subject)) out.set(k, v);
  if (out.size === 0) throw new DataError(`no R data files in ${dataDir}`, subject);
  return out;
}

const CHAPTERS: ChapterRules = {
  heading: /^(CHAPTER|Chapter) +([0-9]+|[IVXLC]+)\.?( .*)?$|^Epilogue$/,
  end: /^(THE END|FINIS|Finis|A NOTE ON THE TEXT)$/,
  drop: /^VOLUME [IVX]+$/,
};

/** One document per chapter, with ids `<prefix>/001`, `<prefix>/002`, ... in book order. */
function chapterDocuments(source: string, prefix: string, text: string): CorpusDocument[] {
  const chapters = splitChapters(stripGutenberg(text), CHAPTERS);
  if (chapters.length === 0) throw new DataError(`no chapter headings found in ${prefix}`, source);
  return chapters.map((c, i) => ({
    id: `${prefix}/${String(i + 1).padStart(3, "0")}`,
    source,
    text: `${c.heading}\n\n${unwrap(stripUnderscoreItalics(c.body), 0)}`,
  }));
}

function joinedText(v: RValue, subject: string): string {
  return asStrings(v, subject)
    .map((s) => s ?? "")
    .join("\n");
}

export const janeaustenr: CorpusSource = {
  name: "janeaustenr",
  description: "Jane Austen's six completed novels",
  licence: "public domain texts (package: MIT)",
  packages: [{ registry: "debian", name: "r-cran-janeaustenr", version: "1.0.0-1" }],
  async extract([root]) {
    const data = loadRPackageData(join(root!, "usr/lib/R/site-library/janeaustenr"), "janeaustenr");
    const docs: CorpusDocument[] = [];
    for (const [book, v] of data)
      docs.push(
        ...chapterDocuments("janeaustenr", `janeaustenr/${book}`, joinedText(v, `janeaustenr:${book}`)),
      );
    return docs;
  },
};

export const mobydick: CorpusSource = {
  name: "mobydick",
  description: "Herman Melville, Moby Dick (Project Gutenberg #2701, from the R tokenizers package)",
  licence: "public domain text (package: MIT)",
  packages: [{ registry: "debian", name: "r-cran-tokenizers", version: "0.3.0-1" }],
  async extract([root]) {
    const data = loadRPackageData(join(root!, "usr/lib/R/site-library/tokenizers"), "mobydick");
    const v = data.get("mobydick");
    if (!v) throw new DataError("no `mobydick` object in the package's data", "mobydick");
    return chapterDocuments("mobydick", "mobydick", joinedText(v, "mobydick"));
  },
};
