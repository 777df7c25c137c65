/**
 * The contract every corpus source implements, and the document record the corpus is made of.
 * A source names the registry packages it reads (pinned), its licence, and extracts documents
 * from the unpacked packages; it never downloads anything itself (see `fetch.ts`).
 */

/** One document of the corpus: one line of `train.jsonl` / `validation.jsonl`. */
export interface CorpusDocument {
  /** Stable, unique id, `<source>/<part>`; the train/validation split is a hash of it. */
  readonly id: string;
  /** The source's name, as in the manifest and `--sources`. */
  readonly source: string;
  /** Normalised English text: NFC, LF line ends, paragraphs separated by one blank line. */
  readonly text: string;
}

/** A package in a registry, pinned to the version the extractor was written and checked against. */
export interface PackageRef {
  readonly registry: "npm" | "debian";
  readonly name: string;
  readonly version: string;
}

export interface CorpusSource {
  /** Short name used in ids, `--sources` and the manifest. */
  readonly name: string;
  /** One line: what the text is. */
  readonly description: string;
  /** The licence the text is distributed under. */
  readonly licence: string;
  readonly packages: readonly PackageRef[];
  /**
   * Documents in a fixed order, from the unpacked packages (`roots[i]` is the root of
   * `packages[i]`: the npm tarball's contents, or the `dpkg -x` tree). Texts need not be
   * normalised yet; the builder normalises them and drops empty ones.
   */
  extract(roots: readonly string[]): Promise<CorpusDocument[]>;
}
