/**
 * Splicing dictionaries into the Gemma 3 forward pass, as interventions (`model.forward(ids,
 * { interventions: splice.interventions })`). At a dictionary's write site the model's activation
 * is replaced by the reconstruction, or, with `keepError`, left as the model computed it, which is
 * exactly reconstruction + error with error = activation - reconstruction. Either way the feature
 * activations of every token are recorded (`splice.acts()`), and `editActs` can change them first
 * (feature steering or ablation): the site then receives reconstruction(edited) (+ error).
 *
 * - SAE: one intervention at its site.
 * - Transcoder / skip-transcoder: the read site (mlp_in) records the input, the write site (mlp_out)
 *   decodes it.
 * - Cross-layer transcoder: every layer's mlp_in is encoded; layer l's mlp_out receives
 *   sum_{i <= l} acts_i W_dec^{i -> l} + b_dec_l (the replacement model of "Circuit Tracing").
 * Several splices combine by concatenating their interventions (`spliceAll`). Transcoders at every
 * layer, or a CLT, give a full replacement model. Reconstructions are not differentiable (the
 * sparse path records nothing for `grad`).
 */
import { DictionaryError } from "../core/errors.js";
import { add, sub } from "../core/ops/elementwise.js";
import { reshape } from "../core/ops/shape.js";
import type { Tensor } from "../core/tensor.js";
import type { Gemma3Config } from "../model/gemma3/config.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Site } from "../model/gemma3/sites.js";
import type { FeatureActs } from "./feature-acts.js";
import { type DictionarySites, dictionarySites } from "./sites.js";
import { type Dictionary, isLayerwise, type LayerwiseDictionary } from "./types.js";

export interface SpliceOptions {
  /** Keep the error term, so that the model's own activations pass through unchanged (default false). */
  readonly keepError?: boolean;
  /** Sequence positions (counting cached tokens) to splice; all when omitted. */
  readonly positions?: readonly number[];
  /**
   * Changes the feature activations before they are decoded ([batch, seq, width]); `layer` is the
   * source layer for a CLT, else null. The recorded acts are the unedited ones.
   */
  readonly editActs?: (
    acts: FeatureActs,
    info: { readonly layer: number | null; readonly site: Site },
  ) => FeatureActs;
}

/** What the last forward call produced at one write site. */
export interface SpliceOutput {
  readonly site: Site;
  /** The reconstruction from the unedited features [batch, seq, d_out]. */
  readonly recon: Tensor<"f32">;
  /** activation - recon: the model's own activation minus the reconstruction. */
  readonly error: Tensor<"f32">;
}

export class Splice {
  readonly dictionary: Dictionary;
  readonly sites: DictionarySites;
  readonly interventions: readonly Intervention[];
  private readonly lastActs: (FeatureActs | null)[];
  private readonly lastOut: (SpliceOutput | null)[];

  /** @internal use `splice()` */
  constructor(dictionary: Dictionary, sites: DictionarySites, build: (s: Splice) => Intervention[]) {
    this.dictionary = dictionary;
    this.sites = sites;
    this.lastActs = sites.read.map(() => null);
    this.lastOut = sites.write.map(() => null);
    this.interventions = build(this);
  }

  /**
   * Feature activations [batch, seq, width] of the last forward call, one per read site (a CLT's
   * index is its layer); null where the call did not reach the site.
   */
  acts(): readonly (FeatureActs | null)[] {
    return [...this.lastActs];
  }

  /** Reconstruction and error of the last forward call, one per write site. */
  outputs(): readonly (SpliceOutput | null)[] {
    return [...this.lastOut];
  }

  /** @internal */
  record(read: number, acts: FeatureActs | null, write: number | null, out: SpliceOutput | null): void {
    if (acts !== null) this.lastActs[read] = acts;
    if (write !== null) this.lastOut[write] = out;
  }

  /** @internal Forget the previous call (so a site that is not reached reads as null). */
  reset(): void {
    this.lastActs.fill(null);
    this.lastOut.fill(null);
  }
}

function withPositions(site: Site, options: SpliceOptions, apply: Intervention["apply"]): Intervention {
  return options.positions === undefined
    ? { site, apply }
    : { site, positions: [...options.positions], apply };
}

/** The value written at a site: recon(edited) (+ error), or the activation itself when unedited with the error kept. */
function output(
  act: Tensor<"f32">,
  recon: Tensor<"f32">,
  edited: Tensor<"f32"> | null,
  keepError: boolean,
): Tensor<"f32"> {
  if (!keepError) return edited ?? recon;
  return edited === null ? act : add(act, sub(edited, recon));
}

function singleSite(dict: Dictionary, sites: DictionarySites, options: SpliceOptions): Splice {
  const keepError = options.keepError ?? false;
  const [readSite] = sites.read;
  const [writeSite] = sites.write;
  const sameSite = readSite.name === writeSite.name;
  return new Splice(dict, sites, (s) => {
    let input: Tensor<"f32"> | null = null;
    let acts: FeatureActs | null = null;
    const read = (act: Tensor<"f32">): void => {
      s.reset();
      input = act;
      acts = dict.encode(act);
      s.record(0, acts, null, null);
    };
    const write = (act: Tensor<"f32">): Tensor<"f32"> => {
      if (input === null || acts === null) {
        throw new DictionaryError(
          `splice: ${writeSite.name} was reached before ${readSite.name}`,
          dict.spec.source,
        );
      }
      const x = input;
      const a = acts;
      input = null;
      acts = null;
      const recon = reshape(dict.decode(a, x), act.shape);
      const edit = options.editActs?.(a, { layer: null, site: readSite });
      const edited = edit === undefined ? null : reshape(dict.decode(edit, x), act.shape);
      s.record(0, null, 0, { site: writeSite, recon, error: sub(act, recon) });
      return output(act, recon, edited, keepError);
    };
    if (sameSite) {
      return [
        withPositions(writeSite, options, (act) => {
          read(act);
          return write(act);
        }),
      ];
    }
    return [
      {
        site: readSite,
        apply: (act) => {
          read(act);
          return act;
        },
      },
      withPositions(writeSite, options, (act) => write(act)),
    ];
  });
}

function crossLayer(clt: LayerwiseDictionary, sites: DictionarySites, options: SpliceOptions): Splice {
  const keepError = options.keepError ?? false;
  const L = sites.read.length;
  return new Splice(clt, sites, (s) => {
    const inputs: (Tensor<"f32"> | null)[] = new Array(L).fill(null);
    const acts: (FeatureActs | null)[] = new Array(L).fill(null);
    const edits: (FeatureActs | null)[] = new Array(L).fill(null);
    const rows = (act: Tensor<"f32">, d: number) => reshape(act, [-1, d]);
    const interventions: Intervention[] = [];
    for (let l = 0; l < L; l++) {
      const readSite = sites.read[l];
      const writeSite = sites.write[l];
      interventions.push({
        site: readSite,
        apply: (act) => {
          if (l === 0) {
            s.reset();
            inputs.fill(null);
            acts.fill(null);
            edits.fill(null);
          }
          inputs[l] = act;
          const a = clt.encodeLayer(l, act);
          acts[l] = a;
          edits[l] = options.editActs?.(a, { layer: l, site: readSite }) ?? null;
          s.record(l, a, null, null);
          return act;
        },
      });
      interventions.push(
        withPositions(writeSite, options, (act: Tensor<"f32">) => {
          const sources: FeatureActs[] = [];
          const edited: FeatureActs[] = [];
          for (let i = 0; i <= l; i++) {
            const a = acts[i];
            if (a === null) {
              throw new DictionaryError(
                `splice: ${writeSite.name} was reached before ${sites.read[i].name}`,
                clt.spec.source,
              );
            }
            sources.push(a);
            edited.push(edits[i] ?? a);
          }
          const x = inputs[l] as Tensor<"f32">;
          const xl = rows(x, clt.spec.dIn);
          const recon = reshape(clt.decodeLayer(l, sources, xl), act.shape);
          const anyEdit = edits.slice(0, l + 1).some((e) => e !== null);
          const e = anyEdit ? reshape(clt.decodeLayer(l, edited, xl), act.shape) : null;
          s.record(l, null, l, { site: writeSite, recon, error: sub(act, recon) });
          return output(act, recon, e, keepError);
        }),
      );
    }
    return interventions;
  });
}

/**
 * Interventions that splice `dict` into a model with `config` (hook points resolved and checked
 * by `dictionarySites`).
 */
export function splice(dict: Dictionary, config: Gemma3Config, options: SpliceOptions = {}): Splice {
  const sites = dictionarySites(dict.spec, config);
  if (isLayerwise(dict)) return crossLayer(dict, sites, options);
  if (sites.read.length !== 1 || sites.write.length !== 1) {
    throw new DictionaryError("splice: a multi-layer dictionary needs its own splicing", dict.spec.source);
  }
  return singleSite(dict, sites, options);
}

/** Several dictionaries at once (e.g. a transcoder at every layer): their splices and all interventions in order. */
export function spliceAll(
  dicts: readonly Dictionary[],
  config: Gemma3Config,
  options: SpliceOptions = {},
): { readonly splices: readonly Splice[]; readonly interventions: readonly Intervention[] } {
  const splices = dicts.map((d) => splice(d, config, options));
  return { splices, interventions: splices.flatMap((s) => s.interventions) };
}
