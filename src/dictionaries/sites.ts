/**
 * Where a dictionary sits in a model: its published hook points (Hugging Face module names, `{all}`
 * for every layer of a cross-layer transcoder) turned into runtime `Site`s by the model's own parser
 * (`parseSite`), with d_in / d_out checked against the sites' widths.
 */
import { DictionaryError, GlassboxError } from "../core/errors.js";
import type { Gemma3Config } from "../model/gemma3/config.js";
import { parseSite, type Site } from "../model/gemma3/sites.js";
import type { DictionarySpec } from "./types.js";

const ALL = "{all}";

/** The sites a dictionary reads and writes; a CLT has one of each per layer (index = layer). */
export interface DictionarySites {
  readonly read: readonly Site[];
  readonly write: readonly Site[];
}

function siteFor(spec: DictionarySpec, name: string, config: Gemma3Config): Site {
  try {
    return parseSite(name, config);
  } catch (e) {
    if (e instanceof GlassboxError) {
      throw new DictionaryError(
        `its hook point ${JSON.stringify(name)} is not a site of this model: ${e.message}`,
        spec.source,
      );
    }
    throw e;
  }
}

function width(site: Site, config: Gemma3Config): number {
  const shape = site.shape(config, 1, 1);
  return shape[shape.length - 1];
}

/**
 * Resolves `spec`'s hook points for a model with `config`; throws `DictionaryError` when a hook is
 * missing or unknown, a CLT spans another number of layers than the model has, or d_in / d_out
 * differ from the sites' widths.
 */
export function dictionarySites(spec: DictionarySpec, config: Gemma3Config): DictionarySites {
  const { hookIn, hookOut } = spec;
  if (hookIn === null || hookOut === null) {
    throw new DictionaryError(
      "the dictionary does not say which site it reads (no hook points); give them when loading (CLI: --hook-in, --hook-out)",
      spec.source,
    );
  }
  let read: Site[];
  let write: Site[];
  if (spec.layers !== null) {
    if (spec.layers !== config.layers) {
      throw new DictionaryError(
        `the CLT spans ${spec.layers} layers but the model has ${config.layers}`,
        spec.source,
      );
    }
    const each = (h: string) =>
      Array.from({ length: config.layers }, (_, l) => siteFor(spec, h.replaceAll(ALL, String(l)), config));
    read = each(hookIn);
    write = each(hookOut);
  } else {
    read = [siteFor(spec, hookIn, config)];
    write = [siteFor(spec, hookOut, config)];
  }
  for (const [sites, d, what] of [
    [read, spec.dIn, "d_in"],
    [write, spec.dOut, "d_out"],
  ] as const) {
    for (const s of sites) {
      const w = width(s, config);
      if (w !== d)
        throw new DictionaryError(`${what} is ${d} but site ${s.name} has width ${w}`, spec.source);
      if (s.seqAxis < 0) throw new DictionaryError(`site ${s.name} has no token axis`, spec.source);
    }
  }
  return { read, write };
}
