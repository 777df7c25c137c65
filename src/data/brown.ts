/**
 * Turns Brown Corpus "Form C" files (one sentence per line, tokens written `word/tag`, a tab at
 * the start of a paragraph's first line; see the corpus manual, Francis & Kučera 1964/1979, and
 * the package's CONTENTS file) back into running text: tags stripped, tokens re-spaced the way
 * English is printed. Quotes: the corpus writes `` and '' for double quotes, rendered as ".
 */

/** The word of one `word/tag` token (the tag follows the last slash; words like 1/2 keep theirs). */
export function stripTag(token: string): string {
  const slash = token.lastIndexOf("/");
  return slash <= 0 ? token : token.slice(0, slash);
}

// Tokens that attach to the word before them / after them.
const CLOSING = /^([,.;:!?%)\]}]|\.\.\.|''|'s|'|n't|'re|'ve|'ll|'d|'m)$/i;
const OPENING = /^([([{$]|``)$/;

/**
 * Joins tag-stripped tokens into text with conventional spacing. Two habits of the corpus are
 * undone: a comma or period placed after a closing quote goes back inside it (American
 * printing, as in the sources), and a sentence-final period or doubled punctuation after an
 * abbreviation's own period ("min. .", "; ;") is dropped.
 */
export function detokenize(words: readonly string[]): string {
  let out = "";
  let glueNext = true;
  let singleQuoteOpen = false;
  let prev = "";
  for (const w of words) {
    let word = w;
    if (/^[.,;:!?]$/.test(word) && (word === prev || (word === "." && out.endsWith(".")))) continue;
    if ((word === "," || word === ".") && prev === "''") {
      const beforeQuote = out.slice(0, -1);
      out = word === "." && beforeQuote.endsWith(".") ? out : `${beforeQuote}${word}"`;
      prev = word;
      continue;
    }
    let attachLeft = CLOSING.test(word);
    let attachRight = OPENING.test(word);
    if (word === "``" || word === "''") word = '"';
    else if (word === "'") {
      // A lone single quote alternates between opening and closing within a paragraph.
      attachLeft = singleQuoteOpen;
      attachRight = !singleQuoteOpen;
      singleQuoteOpen = !singleQuoteOpen;
    }
    out += glueNext || attachLeft ? word : ` ${word}`;
    glueNext = attachRight;
    prev = w;
  }
  return out;
}

/** A line whose every token is tagged `-hl` is a headline (title or section heading). */
function isHeadline(tokens: readonly string[]): boolean {
  return tokens.length > 0 && tokens.every((t) => /\/[^/]*-hl$/.test(t));
}

/**
 * One Brown file to paragraphs of text. Sentences of a paragraph are joined with a space;
 * paragraphs (a line starting with a tab) are separated by a blank line, and a headline is a
 * paragraph of its own.
 */
export function detagBrown(file: string): string {
  const paragraphs: string[][] = [];
  let startNext = true;
  for (const line of file.replace(/\r\n?/g, "\n").split("\n")) {
    if (line.trim() === "") continue;
    const tokens = line.trim().split(/\s+/);
    const headline = isHeadline(tokens);
    if (line.startsWith("\t") || startNext || headline) paragraphs.push([]);
    paragraphs.at(-1)!.push(...tokens.map(stripTag));
    startNext = headline;
  }
  return paragraphs.map(detokenize).join("\n\n");
}
