/**
 * Feature steering, clamping and ablation as model interventions (shared/reference/algorithms.md,
 * "Features and steering"), usable in `model.forward` and in `generate` / `generateStream`:
 *
 * - add:    x <- x + alpha * d / |d| at the dictionary's write site: alpha is the norm of what is
 *   added. A cross-layer transcoder feature of source layer l writes to every layer t >= l; it adds
 *   alpha * d_t / |d| at each target's write site, with |d| the norm of its decoder rows
 *   concatenated over those targets, so the feature's own mix across layers is kept and the whole
 *   write has norm alpha.
 * - clamp:  x <- x + (c - f(x)) d, the error term kept (d the decoder row as stored, f(x) the
 *   feature's activation encoded from the dictionary's read site: mlp_in for transcoders and CLTs,
 *   the site itself for SAEs). It is what `splice(dict, config, { keepError: true, editActs })`
 *   writes when editActs sets the feature to c, recon(edited) - recon = (c - f) d, computed directly
 *   (tested against that splice): only the steered features are decoded, and a CLT encodes only the
 *   source layers that are clamped.
 * - ablate: clamp to 0.
 *
 * Several specs combine (adds and clamps of one dictionary, each with its own positions): every
 * clamped source layer is encoded once per forward call, before anything is written, so a clamp
 * measures the model's own f(x) and the adds come on top of it; each write site gets one
 * intervention adding the sum of its specs' terms. Positions are sequence indices (counting tokens
 * already in a KV cache, i.e. of the left-padded batch in `generate`); `{ from: n }` changes every
 * position >= n, e.g. only generated tokens with n = the prompt length. The first new token is
 * predicted at position n - 1, so `{ from: n }` leaves it unchanged and acts from the second on.
 *
 * Strengths can be read as multiples of a feature's max activation in a statistics database
 * (`features build`, db.ts): `scaleToMaxActivation`.
 */
import { existsSync, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { DictionaryError, FeaturesError } from "../core/errors.js";
import { add } from "../core/ops/elementwise.js";
import { narrow } from "../core/ops/shape.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import type { FeatureActs } from "../dictionaries/feature-acts.js";
import { dictionarySites } from "../dictionaries/sites.js";
import { type Dictionary, type DictionarySpec, isLayerwise } from "../dictionaries/types.js";
import type { Gemma3Config } from "../model/gemma3/config.js";
import type { Intervention, InterventionContext } from "../model/gemma3/interventions.js";
import type { Site } from "../model/gemma3/sites.js";
import type { FeatureDatabase, SpaceRow } from "./db.js";

/** Sequence positions a spec changes: all, a list of sequence indices, or every index >= `from`. */
export type SteerPositions = "all" | readonly number[] | { readonly from: number };

interface SpecBase {
  /** Feature index in the dictionary (in its source layer for a CLT), 0 .. width - 1. */
  readonly feature: number;
  /** A cross-layer transcoder feature's source layer: required there, absent for other dictionaries. */
  readonly layer?: number;
  /** Positions this spec changes (default: `SteeringOptions.positions`, else all). */
  readonly positions?: SteerPositions;
}

/** Adds `strength` * the unit decoder direction (concatenated over a CLT's target layers). */
export interface AddSpec extends SpecBase {
  readonly mode: "add";
  /** alpha: the norm of the added vector (negative values subtract the direction). */
  readonly strength: number;
}

/** Sets the feature to `value`, keeping the error: x <- x + (value - f(x)) d. */
export interface ClampSpec extends SpecBase {
  readonly mode: "clamp";
  readonly value: number;
}

/** Clamps the feature to 0: x <- x - f(x) d. */
export interface AblateSpec extends SpecBase {
  readonly mode: "ablate";
}

export type SteerSpec = AddSpec | ClampSpec | AblateSpec;

export interface SteeringOptions {
  /** Positions of every spec that does not give its own (default "all"). */
  readonly positions?: SteerPositions;
}

/** One site a feature writes to, with its decoder row there. */
export interface FeatureTarget {
  readonly site: Site;
  /** The decoder row [d_out] as stored (widened to f32). */
  readonly row: Float32Array;
}

/** Where and what a feature writes. */
export interface FeatureDirection {
  readonly feature: number;
  /** Source layer of a CLT feature, else null. */
  readonly layer: number | null;
  /** The write site(s): one for single-site dictionaries, layers l .. L-1 for a CLT feature of layer l. */
  readonly targets: readonly FeatureTarget[];
  /** Norm of the target rows concatenated. */
  readonly norm: number;
}

/** What is wrong with naming `feature` (of source layer `layer`) of a dictionary, or null. */
export function featureProblem(
  spec: DictionarySpec,
  feature: number,
  layer: number | null | undefined,
): { readonly argument: "feature" | "layer"; readonly message: string } | null {
  if (!Number.isSafeInteger(feature) || feature < 0 || feature >= spec.width) {
    return {
      argument: "feature",
      message: `feature ${feature} is out of range: the dictionary has ${spec.width} features (0-${spec.width - 1})${spec.layers === null ? "" : " per layer"}`,
    };
  }
  if (spec.layers !== null) {
    if (layer === undefined || layer === null) {
      return {
        argument: "layer",
        message: `the dictionary is a cross-layer transcoder: a feature needs its source layer (0-${spec.layers - 1})`,
      };
    }
    if (!Number.isSafeInteger(layer) || layer < 0 || layer >= spec.layers) {
      return {
        argument: "layer",
        message: `layer ${layer} is out of range: the cross-layer transcoder has source layers 0-${spec.layers - 1}`,
      };
    }
  } else if (layer !== undefined && layer !== null) {
    return {
      argument: "layer",
      message: `only a cross-layer transcoder's features have a source layer; this dictionary is a ${spec.architecture}`,
    };
  }
  return null;
}

/** What is wrong with a positions value, or null. */
export function positionsProblem(positions: SteerPositions): string | null {
  if (positions === "all") return null;
  const bad = (p: number) => !Number.isSafeInteger(p) || p < 0;
  if ("from" in positions)
    return bad(positions.from) ? `from must be an integer >= 0, got ${positions.from}` : null;
  const wrong = positions.find(bad);
  return wrong === undefined ? null : `positions must be integers >= 0, got ${wrong}`;
}

function checkFeature(dict: Dictionary, feature: number, layer: number | null | undefined): void {
  const p = featureProblem(dict.spec, feature, layer);
  if (p !== null) throw new FeaturesError(p.message, dict.spec.source);
}

/** The decoder row(s) of `feature` (source layer `layer` for a CLT, else null) and its write sites. */
export function featureDirection(
  dict: Dictionary,
  config: Gemma3Config,
  feature: number,
  layer: number | null = null,
): FeatureDirection {
  checkFeature(dict, feature, layer);
  const sites = dictionarySites(dict.spec, config);
  const file = dict.gemmaScope2Form().files.find((f) => f.layer === layer);
  const wDec = file?.tensors().w_dec;
  if (wDec === undefined) {
    throw new FeaturesError(
      `the dictionary has no decoder for ${layer === null ? "its features" : `source layer ${layer}`}`,
      dict.spec.source,
    );
  }
  const dOut = dict.spec.dOut;
  // [d_out] for single-site dictionaries, [layers * d_out] for a CLT's source layer.
  const all = narrow(wDec, 0, feature, 1).toFloat32Array();
  const first = layer ?? 0;
  const targets: FeatureTarget[] = [];
  for (let t = first; t < sites.write.length; t++) {
    const at = layer === null ? 0 : t * dOut;
    targets.push({ site: sites.write[t], row: all.slice(at, at + dOut) });
  }
  let s = 0;
  for (const { row } of targets) for (const v of row) s += v * v;
  return { feature, layer, targets, norm: Math.sqrt(s) };
}

/** Row r of an activation flattened to [rows, width] -> its entry along the site's seq axis. */
function seqIndexOfRow(shape: readonly number[], seqAxis: number): (r: number) => number {
  let inner = 1;
  for (let a = seqAxis + 1; a < shape.length - 1; a++) inner *= shape[a];
  const len = shape[seqAxis];
  return (r) => Math.floor(r / inner) % len;
}

type PositionTest = (position: number) => boolean;

function positionTest(positions: SteerPositions): PositionTest {
  if (positions === "all") return () => true;
  if ("from" in positions) {
    const from = positions.from;
    return (p) => p >= from;
  }
  const wanted = new Set(positions);
  return (p) => wanted.has(p);
}

/** Which rows of `act` a term changes (1 = changed), or null when none. */
function selectRows(act: Tensor, ctx: InterventionContext, wants: PositionTest): Uint8Array | null {
  const rows = act.size / act.shape[act.shape.length - 1];
  const seqOf = seqIndexOfRow(act.shape, ctx.site.seqAxis);
  const out = new Uint8Array(rows);
  let any = false;
  for (let r = 0; r < rows; r++) {
    if (wants(ctx.positions[seqOf(r)])) {
      out[r] = 1;
      any = true;
    }
  }
  return any ? out : null;
}

/** The value of `feature` in row r of `acts`. */
function featureValue(acts: FeatureActs, r: number, feature: number): number {
  const { indices, values } = acts.row(r);
  let lo = 0;
  let hi = indices.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const i = indices[mid];
    if (i === feature) return values[mid];
    if (i < feature) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}

/** One spec, resolved: its read-site index (clamps), coefficient and decoder rows by write site. */
interface Term {
  readonly clamp: boolean;
  readonly feature: number;
  /** Read-site index: the CLT source layer, else 0. */
  readonly source: number;
  /** add: strength / |d|; clamp: the target value. */
  readonly coefficient: number;
  readonly rows: ReadonlyMap<string, Float32Array>;
  readonly wants: PositionTest;
}

/** What a read site measured in the current forward call, for the clamps reading there. */
interface Reading {
  readonly rows: number;
  /** Per clamp term of this source: the rows it changes (null: none) and f(x) of each row. */
  readonly selected: readonly (Uint8Array | null)[];
  readonly values: readonly (Float32Array | null)[];
}

/**
 * Interventions that steer `dict`'s features in a model with `config`: pass them to `model.forward`
 * or `generate` (after any interventions whose effect the clamps should see). Throws
 * `FeaturesError` for an unknown feature or layer and `DictionaryError` when the dictionary does
 * not fit the model's sites.
 */
export function steeringInterventions(
  dict: Dictionary,
  config: Gemma3Config,
  specs: readonly SteerSpec[],
  options: SteeringOptions = {},
): Intervention[] {
  const sites = dictionarySites(dict.spec, config);
  const layered = isLayerwise(dict) ? dict : null;
  const terms: Term[] = specs.map((spec) => {
    const positions = spec.positions ?? options.positions ?? "all";
    const problem = positionsProblem(positions);
    if (problem !== null) throw new FeaturesError(problem, "positions");
    const dir = featureDirection(dict, config, spec.feature, spec.layer ?? null);
    let coefficient: number;
    if (spec.mode === "add") {
      if (!Number.isFinite(spec.strength))
        throw new FeaturesError(`strength must be finite, got ${spec.strength}`);
      if (!(dir.norm > 0)) {
        throw new FeaturesError(
          `feature ${spec.feature} has a zero decoder: there is no direction to add`,
          dict.spec.source,
        );
      }
      coefficient = spec.strength / dir.norm;
    } else {
      coefficient = spec.mode === "clamp" ? spec.value : 0;
      if (!Number.isFinite(coefficient))
        throw new FeaturesError(`clamp value must be finite, got ${coefficient}`);
    }
    return {
      clamp: spec.mode !== "add",
      feature: spec.feature,
      source: spec.layer ?? 0,
      coefficient,
      rows: new Map(dir.targets.map((t) => [t.site.name, t.row])),
      wants: positionTest(positions),
    };
  });

  const out: Intervention[] = [];
  const readings: (Reading | null)[] = sites.read.map(() => null);
  const clampsOf = (source: number) => terms.filter((t) => t.clamp && t.source === source);
  const clampIndex = new Map<Term, number>();
  for (let source = 0; source < sites.read.length; source++) {
    for (const [k, t] of clampsOf(source).entries()) clampIndex.set(t, k);
  }
  // Reads first: at a site that is read and written (an SAE's), f(x) is the model's own activation.
  for (let source = 0; source < sites.read.length; source++) {
    const clamps = clampsOf(source);
    if (clamps.length === 0) continue;
    const readSite = sites.read[source];
    out.push({
      site: readSite,
      apply: (x, ctx) => {
        const rows = x.size / x.shape[x.shape.length - 1];
        const selected = clamps.map((t) => selectRows(x, ctx, t.wants));
        let acts: FeatureActs | null = null;
        const values = clamps.map((t, k) => {
          const sel = selected[k];
          if (sel === null) return null;
          acts ??= layered === null ? dict.encode(x) : layered.encodeLayer(source, x);
          const v = new Float32Array(rows);
          for (let r = 0; r < rows; r++) if (sel[r] === 1) v[r] = featureValue(acts, r, t.feature);
          return v;
        });
        readings[source] = { rows, selected, values };
        return x;
      },
    });
  }
  // The last write site of each source consumes its reading.
  const lastWrite = new Map<number, string>();
  for (const t of terms) if (t.clamp) lastWrite.set(t.source, [...t.rows.keys()].at(-1) as string);
  for (const writeSite of sites.write) {
    const here = terms.filter((t) => t.rows.has(writeSite.name));
    if (here.length === 0) continue;
    out.push({
      site: writeSite,
      apply: (x, ctx) => {
        const d = x.shape[x.shape.length - 1];
        const rows = x.size / d;
        let delta: Float32Array | null = null;
        for (const t of here) {
          const row = t.rows.get(writeSite.name) as Float32Array;
          let sel: Uint8Array | null;
          let values: Float32Array | null = null;
          if (t.clamp) {
            const reading = readings[t.source];
            if (reading === null) {
              throw new DictionaryError(
                `steering: ${writeSite.name} was reached before ${sites.read[t.source].name}`,
                dict.spec.source,
              );
            }
            if (reading.rows !== rows) {
              throw new DictionaryError(
                `steering: ${sites.read[t.source].name} had ${reading.rows} rows, ${writeSite.name} has ${rows}`,
                dict.spec.source,
              );
            }
            const k = clampIndex.get(t) as number;
            sel = reading.selected[k];
            values = reading.values[k];
          } else {
            sel = selectRows(x, ctx, t.wants);
          }
          if (sel === null) continue;
          delta ??= new Float32Array(x.size);
          for (let r = 0; r < rows; r++) {
            if (sel[r] === 0) continue;
            const c = values === null ? t.coefficient : t.coefficient - values[r];
            if (c === 0) continue;
            const base = r * d;
            for (let j = 0; j < d; j++) delta[base + j] += c * row[j];
          }
        }
        for (const [source, site] of lastWrite) if (site === writeSite.name) readings[source] = null;
        return delta === null ? x : add(x, fromStorage(x.backend, "f32", x.shape, delta));
      },
    });
  }
  return out;
}

function samePath(a: string, b: string): boolean {
  if (resolve(a) === resolve(b)) return true;
  return existsSync(a) && existsSync(b) && realpathSync(a) === realpathSync(b);
}

function describeSpace(s: SpaceRow): string {
  return `${s.dictionary}${s.layer === null ? "" : ` layer ${s.layer}`}`;
}

/**
 * The space of a statistics database that holds the features of the dictionary loaded from
 * `dictPath` (source layer `layer` of a CLT, else null): the one built from the same folder, else
 * the only one with the same architecture, width and hook points. Throws `FeaturesError` when
 * none (or several) fit.
 */
export function statisticsSpace(
  db: FeatureDatabase,
  dictPath: string,
  spec: DictionarySpec,
  layer: number | null,
): SpaceRow {
  const spaces = db.spaces();
  const inLayer = spaces.filter((s) => s.layer === layer);
  const fits = (s: SpaceRow) =>
    s.architecture === spec.architecture &&
    s.width === spec.width &&
    s.hookIn === spec.hookIn &&
    s.hookOut === spec.hookOut;
  const byPath = inLayer.filter((s) => samePath(s.dictionary, dictPath));
  if (byPath.length > 0) {
    const s = byPath[0];
    if (!fits(s)) {
      throw new FeaturesError(
        `its statistics of ${describeSpace(s)} are of another dictionary (${s.architecture}, ${s.width} features, reading ${s.hookIn}) than the one loaded (${spec.architecture}, ${spec.width} features, reading ${spec.hookIn})`,
        db.path,
      );
    }
    return s;
  }
  const alike = inLayer.filter(fits);
  if (alike.length === 1) return alike[0];
  const held = spaces.map(describeSpace).join(", ") || "none";
  throw new FeaturesError(
    alike.length === 0
      ? `no statistics for ${dictPath}${layer === null ? "" : ` layer ${layer}`} (the database holds: ${held})`
      : `several feature spaces could be ${dictPath}${layer === null ? "" : ` layer ${layer}`} (${alike.map(describeSpace).join(", ")}): build the statistics from the folder given here`,
    db.path,
  );
}

/** The largest activation of `feature` over the statistics run (from its feature page). */
export function maxActivation(db: FeatureDatabase, space: SpaceRow, feature: number): number {
  return db.page(space.space, feature).maxActivation;
}

export interface ScaledSpecs {
  /** The specs with absolute strengths and values. */
  readonly specs: SteerSpec[];
  /** Each spec's feature max activation in the database. */
  readonly maxActivations: number[];
}

/**
 * Reads every spec's strength (add) or value (clamp) as a multiple k of its feature's max
 * activation m in the statistics database and makes it absolute: a clamp's value becomes k * m, an
 * add's strength k * m * |d|, so that what is added is k * m * d, the feature's own write when it
 * fires at k times its max (for unit-norm decoders, as in Gemma Scope, simply alpha = k * m).
 * Ablations are left as they are. Throws `FeaturesError` for a feature that never fired (m = 0).
 */
export function scaleToMaxActivation(
  dict: Dictionary,
  config: Gemma3Config,
  dictPath: string,
  db: FeatureDatabase,
  specs: readonly SteerSpec[],
): ScaledSpecs {
  const maxActivations: number[] = [];
  const scaled = specs.map((spec): SteerSpec => {
    const layer = spec.layer ?? null;
    checkFeature(dict, spec.feature, layer);
    const m = maxActivation(db, statisticsSpace(db, dictPath, dict.spec, layer), spec.feature);
    maxActivations.push(m);
    if (spec.mode === "ablate") return spec;
    if (!(m > 0)) {
      throw new FeaturesError(
        `feature ${spec.feature}${layer === null ? "" : ` of layer ${layer}`} never fired in the statistics run (max activation ${m}): there is nothing to scale by`,
        db.path,
      );
    }
    if (spec.mode === "clamp") return { ...spec, value: spec.value * m };
    const { norm } = featureDirection(dict, config, spec.feature, layer);
    return { ...spec, strength: spec.strength * m * norm };
  });
  return { specs: scaled, maxActivations };
}
