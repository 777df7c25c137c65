/**
 * The Jargon File's plain-text rendition (`jargon.txt`, version 4.4.7 as Debian ships it): the
 * glossary entries only, as prose. Layout of that file: front matter, then "Part II. The Jargon
 * Lexicon" where each entry starts with a line `   :headword: pronunciation, part of speech.`
 * followed by paragraphs indented three spaces; before each letter's entries comes an index of
 * that letter's headwords (a line with the bare letter, then one headword per paragraph); the
 * lexicon ends at "Part III. Appendices". Cross-references are written `{like this}`.
 */
import { unwrap } from "./text.js";

const ENTRY = /^ {3}:(.+?):(.*)$/;
const LETTER_INDEX = /^ {2,3}[0-9A-Z]$/;
const LEXICON_END = /^\s+Part III\. Appendices\s*$/;

export interface JargonEntry {
  readonly headword: string;
  /** The entry as prose: "headword: pronunciation, pos." then its paragraphs. */
  readonly text: string;
}

function render(headword: string, rest: string, body: readonly string[]): string {
  const meta = rest.trim().replace(/^\/\/,?\s*/, "");
  const first = meta === "" ? headword : `${headword}: ${meta}`;
  const paragraphs = unwrap(body.join("\n"), 3).replace(/\{([^{}]+)\}/g, "$1");
  return paragraphs === "" ? first : `${first}\n\n${paragraphs}`;
}

export function parseJargon(text: string): JargonEntry[] {
  const entries: JargonEntry[] = [];
  let current: { headword: string; rest: string; body: string[] } | null = null;
  let inIndex = false;
  const flush = (): void => {
    if (current)
      entries.push({
        headword: current.headword,
        text: render(current.headword, current.rest, current.body),
      });
    current = null;
  };
  for (const line of text.replace(/\r\n?/g, "\n").split("\n")) {
    if (LEXICON_END.test(line)) break;
    const m = ENTRY.exec(line);
    if (m) {
      flush();
      inIndex = false;
      current = { headword: m[1]!, rest: m[2]!, body: [] };
      continue;
    }
    if (current === null) continue;
    if (LETTER_INDEX.test(line)) inIndex = true;
    if (!inIndex) current.body.push(line);
  }
  flush();
  return entries;
}
