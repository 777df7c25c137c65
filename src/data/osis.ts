/**
 * OSIS markup (OSIS 2.1.1 User's Manual, bibletechnologies.net) to plain prose, one record per
 * chapter. SWORD modules imported by osis2mod store each verse's markup in its own index slot and
 * mark chapters with milestones, `<chapter sID="Gen.1" osisID="Gen.1"/>` ... `<chapter eID="Gen.1"/>`
 * (or, in older modules, a `<chapter osisID>` container), so chapters are found in the markup
 * itself, with no versification table. Kept: the words (`<w>` Strong's/morph attributes dropped,
 * `<transChange>`, `<divineName>`, `<q>`, `<foreign>`, poetry lines), canonical psalm titles.
 * Dropped with their content: notes and their references, non-canonical titles (headings),
 * speaker labels, alternative readings, catchwords. Paragraph markers (elements, or the KJV's
 * pilcrows) become blank lines.
 * Text outside any chapter (book introductions, prefaces, glossaries) is not returned.
 */

export interface OsisChapter {
  /** The chapter's OSIS id, e.g. "Gen.1". */
  readonly osisID: string;
  /** Verses joined as prose; paragraphs separated by a blank line. */
  readonly text: string;
}

const DROP_CONTENT = new Set(["note", "speaker", "rdg", "catchWord", "figure"]);
const TAG =
  /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>/g;
const ATTR = /([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g;

function attributes(s: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of s.matchAll(ATTR)) m.set(a[1]!, a[2] ?? a[3] ?? "");
  return m;
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|\w+);/g, (whole, e: string) => {
    if (e.startsWith("#x")) return String.fromCodePoint(Number.parseInt(e.slice(2), 16));
    if (e.startsWith("#")) return String.fromCodePoint(Number.parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? whole;
  });
}

const PARAGRAPH = "\u0000P\u0000";

/** Whether an element starts or ends a paragraph (`<p>`, `<div type="x-p">`, `<lb type="x-p">`, `<lg>`). */
function isParagraphBreak(name: string, attrs: Map<string, string>): boolean {
  if (name === "p" || name === "lg") return true;
  if ((name === "div" || name === "lb" || name === "milestone") && attrs.get("type") === "x-p") return true;
  return false;
}

/** Drops an element's content: the fixed set, plus titles that are not part of the text. */
function dropsContent(name: string, attrs: Map<string, string>): boolean {
  if (DROP_CONTENT.has(name)) return true;
  return name === "title" && attrs.get("canonical") !== "true";
}

function finish(raw: string): string {
  return raw
    .replace(/\u00b6/g, PARAGRAPH) // the KJV's pilcrow paragraph marks
    .split(PARAGRAPH)
    .map((p) =>
      p
        .replace(/\s+/g, " ")
        .replace(/ ([,.;:!?’”)])/g, "$1")
        .trim(),
    )
    .filter((p) => p !== "")
    .join("\n\n");
}

/** Splits the concatenated verse markup of a module (slot by slot, in order) into chapters. */
export function osisChapters(entries: Iterable<string>): OsisChapter[] {
  const chapters: OsisChapter[] = [];
  let current: { id: string; parts: string[] } | null = null;
  const dropStack: string[] = [];
  const close = (): void => {
    if (current) chapters.push({ osisID: current.id, text: finish(current.parts.join("")) });
    current = null;
  };
  for (const raw of entries) {
    // A few slots end inside a tag (the module's own data); drop the unterminated tag.
    const entry = raw.replace(/<[^>]*$/, "");
    // Slots are separate verses: keep a word boundary between them.
    current?.parts.push(" ");
    let last = 0;
    for (const m of entry.matchAll(TAG)) {
      if (current && dropStack.length === 0 && m.index > last)
        current.parts.push(decodeEntities(entry.slice(last, m.index)));
      last = m.index + m[0].length;
      const name = m[2];
      if (name === undefined) continue; // comment or processing instruction
      const closing = m[1] === "/";
      const selfClosing = m[4] === "/";
      const attrs = attributes(m[3] ?? "");
      if (dropStack.length > 0) {
        if (closing && dropStack.at(-1) === name) {
          dropStack.pop();
          // Notes often sit between two words with no space around them.
          if (dropStack.length === 0) current?.parts.push(" ");
        } else if (!closing && !selfClosing && name === dropStack.at(-1)) dropStack.push(name);
        continue;
      }
      if (name === "chapter") {
        if (attrs.has("eID") || closing) close();
        else if (attrs.has("osisID")) {
          close();
          current = { id: attrs.get("osisID")!, parts: [] };
        }
        continue;
      }
      if (!closing && !selfClosing && dropsContent(name, attrs)) {
        dropStack.push(name);
        continue;
      }
      if (isParagraphBreak(name, attrs) || (name === "title" && closing)) current?.parts.push(PARAGRAPH);
      else current?.parts.push(" ".repeat(name === "l" || name === "lb" ? 1 : 0));
    }
    if (current && dropStack.length === 0 && last < entry.length)
      current.parts.push(decodeEntities(entry.slice(last)));
  }
  close();
  return chapters;
}
