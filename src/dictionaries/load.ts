/**
 * Loading a dictionary from a path in any supported format. The format is recognised by the files
 * present (each format module says what it needs); anything else is a `DictionaryError` naming the
 * path and what was expected.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Backend } from "../core/backend.js";
import { DictionaryError } from "../core/errors.js";
import type { DictionaryInfo } from "./formats/common.js";
import {
  type GemmaScope1Options,
  inspectGemmaScope1,
  isGemmaScope1,
  loadGemmaScope1,
} from "./formats/gemma-scope-1.js";
import { inspectGemmaScope2, isGemmaScope2, loadGemmaScope2 } from "./formats/gemma-scope-2.js";
import { inspectSaeLens, isSaeLens, loadSaeLens } from "./formats/saelens.js";
import type { Dictionary } from "./types.js";

export interface LoadOptions {
  /** Only for Gemma Scope 1 files, which do not record what they read and write. */
  readonly gemmaScope1?: GemmaScope1Options;
}

interface Format {
  readonly name: string;
  /** The files it needs, for the error when nothing matches. */
  readonly expects: string;
  detect(path: string): boolean;
  load(path: string, backend: Backend, options: LoadOptions): Dictionary;
  inspect(path: string, options: LoadOptions): DictionaryInfo;
}

const FORMATS: readonly Format[] = [
  {
    name: "gemma-scope-2",
    expects: "config.json with params.safetensors (or params_layer_0.safetensors ... for a CLT)",
    detect: isGemmaScope2,
    load: (p, b) => loadGemmaScope2(p, b),
    inspect: (p) => inspectGemmaScope2(p),
  },
  {
    name: "saelens",
    expects: "cfg.json with sae_weights.safetensors (SAELens)",
    detect: isSaeLens,
    load: (p, b) => loadSaeLens(p, b),
    inspect: (p) => inspectSaeLens(p),
  },
  {
    name: "gemma-scope-1",
    expects: "params.npz (Gemma Scope 1)",
    detect: isGemmaScope1,
    load: (p, b, o) => loadGemmaScope1(p, b, o.gemmaScope1),
    inspect: (p, o) => inspectGemmaScope1(p, o.gemmaScope1),
  },
];

/** Whether a folder looks like a repository: dictionary folders one or two levels down. */
function holdsDictionaries(dir: string): boolean {
  const subdirs = (d: string) =>
    readdirSync(d, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(d, e.name));
  return subdirs(dir).some((a) => isGemmaScope2(a) || subdirs(a).some((b) => isGemmaScope2(b)));
}

function formatOf(path: string): Format {
  if (!existsSync(path)) throw new DictionaryError("no such file or folder", path);
  const f = FORMATS.find((x) => x.detect(path));
  if (f === undefined) {
    const dir = statSync(path).isDirectory();
    const hint =
      dir && holdsDictionaries(path)
        ? " (it holds dictionary folders: list them with `glassbox dict list`)"
        : "";
    throw new DictionaryError(
      `this ${dir ? "folder" : "file"} is not a dictionary: expected ${FORMATS.map((x) => x.expects).join("; or ")}${hint}`,
      path,
    );
  }
  return f;
}

/** Loads the dictionary at `path` (a folder, or a Gemma Scope 1 params.npz) onto `backend`. */
export function loadDictionary(path: string, backend: Backend, options: LoadOptions = {}): Dictionary {
  return formatOf(path).load(path, backend, options);
}

/** Describes the dictionary at `path` from its config and tensor headers, without loading it. */
export function inspectDictionary(path: string, options: LoadOptions = {}): DictionaryInfo {
  return formatOf(path).inspect(path, options);
}
