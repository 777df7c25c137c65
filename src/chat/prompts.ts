/**
 * Prompt and response sets for the chat analyses, read from JSONL: one object per line with the
 * user's message under `prompt` (or `instruction`, as the refusal datasets of Arditi et al. name
 * it), optionally a `kind` ("harmful" / "harmless"), a `response` (persona vectors: the model turn
 * to average over) and any other fields, which are kept. Every problem names the file and line.
 */
import { readFileSync } from "node:fs";
import { ChatError } from "../core/errors.js";

export interface PromptRow {
  readonly prompt: string;
  readonly kind?: string;
  readonly response?: string;
  /** 1-based line in the file. */
  readonly line: number;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** One JSON object per non-empty line, with its 1-based line number; `file` names it in errors. */
export function parseJsonlObjects(
  text: string,
  file: string,
): { line: number; value: Record<string, unknown> }[] {
  const out: { line: number; value: Record<string, unknown> }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new ChatError(`line ${i + 1} is not JSON (the file must be JSONL: one object per line)`, file);
    }
    if (v === null || typeof v !== "object" || Array.isArray(v))
      throw new ChatError(`line ${i + 1} is not a JSON object`, file);
    out.push({ line: i + 1, value: v as Record<string, unknown> });
  });
  return out;
}

/** Reads a JSONL file of objects; a missing or empty file is an error. */
export function readJsonlObjects(
  file: string,
  what: string,
): { line: number; value: Record<string, unknown> }[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ChatError(`cannot read the ${what}: ${(e as Error).message}`, file);
  }
  const rows = parseJsonlObjects(text, file);
  if (rows.length === 0) throw new ChatError(`the ${what} is empty`, file);
  return rows;
}

/** Parses JSONL prompt rows; `file` names it in errors. */
export function parsePromptRows(text: string, file: string): PromptRow[] {
  return promptRowsOf(parseJsonlObjects(text, file), file);
}

function promptRowsOf(
  objects: { line: number; value: Record<string, unknown> }[],
  file: string,
): PromptRow[] {
  return objects.map(({ line, value: o }) => {
    const p = o.prompt ?? o.instruction;
    if (typeof p !== "string" || p.trim() === "")
      throw new ChatError(`line ${line} has no "prompt" (or "instruction") string`, file);
    for (const k of ["kind", "response"] as const)
      if (o[k] !== undefined && typeof o[k] !== "string")
        throw new ChatError(`line ${line}: "${k}" must be a string`, file);
    return {
      prompt: p,
      line,
      fields: o,
      ...(typeof o.kind === "string" ? { kind: o.kind } : {}),
      ...(typeof o.response === "string" ? { response: o.response } : {}),
    };
  });
}

/** Reads a JSONL prompt file; an empty one is an error. */
export function readPromptFile(file: string, what = "prompt set"): PromptRow[] {
  return promptRowsOf(readJsonlObjects(file, what), file);
}
/** Rows of one `kind`, refusing an empty result. */
export function ofKind(rows: readonly PromptRow[], kind: string, file: string): PromptRow[] {
  const out = rows.filter((r) => r.kind === kind);
  if (out.length === 0) throw new ChatError(`no rows with "kind": ${JSON.stringify(kind)}`, file);
  return out;
}

/**
 * Train / validation split of one set: the last `fraction` (at least one row) validates, the rest
 * trains, in file order (a seeded shuffle belongs to whoever made the file).
 */
export function splitRows<T>(
  rows: readonly T[],
  fraction: number,
  what: string,
): { train: T[]; validation: T[] } {
  if (!(fraction > 0 && fraction < 1))
    throw new ChatError(`validation fraction must be in (0, 1), got ${fraction}`);
  if (rows.length < 2)
    throw new ChatError(`the ${what} set needs at least 2 prompts to split, has ${rows.length}`);
  const v = Math.max(1, Math.round(rows.length * fraction));
  return { train: rows.slice(0, rows.length - v), validation: rows.slice(rows.length - v) };
}
