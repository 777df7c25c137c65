/**
 * Plain-text clean-up shared by every corpus source: Unicode and whitespace normalisation,
 * undoing hard wrapping, dropping Project Gutenberg boilerplate, splitting books into chapters,
 * and the word count the manifest reports.
 *
 * Normalisation follows Unicode NFC (UAX #15). Gutenberg's header and footer are recognised by the
 * `*** START OF ... PROJECT GUTENBERG ...` / `*** END OF ...` marker lines that its texts use.
 */

// Applied line by line, so LF is never among the C0/C1 controls (\p{Cc}) it removes. Also drops
// invisible format characters that carry no text: soft hyphen, zero-width space, word joiner, BOM.
const CONTROL = /\p{Cc}|[\u00AD\u200B\u2060\uFEFF]/gu;

const BACKSPACE = String.fromCharCode(8);

/** Applies backspaces as a terminal would: "C\bC" (nroff bold) becomes "C", "_\bx" becomes "x". */
export function applyBackspaces(line: string): string {
  if (!line.includes(BACKSPACE)) return line;
  const out: string[] = [];
  for (const ch of line) {
    if (ch === BACKSPACE) out.pop();
    else out.push(ch);
  }
  return out.join("");
}

/**
 * NFC, LF line ends, backspace overstrikes applied, no control characters, single spaces, no trailing or leading spaces on a
 * line, at most one blank line between paragraphs, no blank lines at either end.
 */
export function normalizeText(s: string): string {
  return s
    .replace(/\r\n?/g, "\n")
    .replace(/[\u2028\u2029]/g, "\n")
    .normalize("NFC")
    .split("\n")
    .map((line) =>
      applyBackspaces(line).replace(/\t/g, " ").replace(CONTROL, "").replace(/ {2,}/g, " ").trim(),
    )
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

/** Whitespace-separated words, the unit `words` counts in the manifest. */
export function countWords(s: string): number {
  const m = s.match(/\S+/g);
  return m === null ? 0 : m.length;
}

/** Unicode code points, the unit `characters` counts in the manifest. */
export function countCharacters(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

/**
 * Undoes hard wrapping. Paragraphs are separated by blank lines and their lines are joined with
 * one space; a line ending in a hyphen or dash joins the next line with no space (Gutenberg texts
 * break lines only at spaces, so such a hyphen is a real one: "twenty-" + "one", "Richard--" +
 * "and"). A paragraph whose lines are all indented deeper than `baseIndent` (verse, letters set
 * apart, code) keeps its line breaks. `baseIndent` defaults to the most common indent of the text.
 */
export function unwrap(text: string, baseIndent?: number): string {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const base = baseIndent ?? commonIndent(lines);
  const paragraphs: string[] = [];
  let current: string[] = [];
  const flush = (): void => {
    if (current.length === 0) return;
    const preformatted = current.length > 1 && current.every((l) => indentOf(l) > base);
    paragraphs.push(preformatted ? current.map((l) => l.trim()).join("\n") : joinLines(current));
    current = [];
  };
  for (const line of lines) {
    if (line.trim() === "") flush();
    else current.push(line);
  }
  flush();
  return paragraphs.join("\n\n");
}

function joinLines(lines: readonly string[]): string {
  let out = "";
  for (const raw of lines) {
    const line = raw.trim();
    if (out === "") out = line;
    else if (/[-\u2010\u2013\u2014]$/.test(out) && !/ -$/.test(out)) out += line;
    else out += ` ${line}`;
  }
  return out;
}

function commonIndent(lines: readonly string[]): number {
  const counts = new Map<number, number>();
  for (const l of lines) if (l.trim() !== "") counts.set(indentOf(l), (counts.get(indentOf(l)) ?? 0) + 1);
  let best = 0;
  let bestCount = -1;
  for (const [indent, c] of [...counts].sort((a, b) => a[0] - b[0]))
    if (c > bestCount) {
      best = indent;
      bestCount = c;
    }
  return best;
}

/** Drops a Project Gutenberg header (through the START marker) and footer (from the END marker). */
export function stripGutenberg(text: string): string {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const start = lines.findIndex((l) => /^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG/i.test(l));
  let end = lines.findIndex(
    (l) =>
      /^\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG/i.test(l) || /^End of (the )?Project Gutenberg/i.test(l),
  );
  if (end < 0) end = lines.length;
  return lines.slice(start + 1, end).join("\n");
}

/** Gutenberg marks italics as `_word_`; the underscores are markup, not text. */
export function stripUnderscoreItalics(text: string): string {
  return text.replace(/(^|[^\w])_([^_\n]+(?:\n[^_\n]+)*)_(?=[^\w]|$)/g, "$1$2");
}

export interface Chapter {
  /** The heading line as the book prints it, e.g. "CHAPTER 1. Loomings." */
  readonly heading: string;
  /** The chapter's text after the heading line, still hard-wrapped. */
  readonly body: string;
}

export interface ChapterRules {
  /** A line that starts a chapter. */
  readonly heading: RegExp;
  /** A line at which the book's text ends ("THE END", an editor's note). */
  readonly end?: RegExp;
  /** Lines dropped wherever they occur (volume headings between chapters). */
  readonly drop?: RegExp;
}

/** Splits a book into chapters; text before the first heading (title page, contents) is dropped. */
export function splitChapters(text: string, rules: ChapterRules): Chapter[] {
  const chapters: { heading: string; lines: string[] }[] = [];
  for (const line of text.replace(/\r\n?/g, "\n").split("\n")) {
    const t = line.trim();
    if (rules.end?.test(t)) break;
    if (rules.heading.test(t)) {
      chapters.push({ heading: t, lines: [] });
      continue;
    }
    if (rules.drop?.test(t)) continue;
    chapters.at(-1)?.lines.push(line);
  }
  return chapters.map((c) => ({ heading: c.heading, body: c.lines.join("\n") }));
}
