/**
 * Searching a feature statistics database (db.ts):
 * - `featuresOnText`: which features fire on a text, per token, ranked by activation relative to
 *   the feature's max over the corpus (what Neuronpedia's "search via inference" shows);
 * - `featuresByContext`: features whose top contexts contain a token (exact vocabulary piece) or,
 *   failing that, a substring of their text;
 * - `featuresByLogit`: features whose top promoted logit tokens include a token ("features that
 *   promote ' Paris'"), ranked by the effect;
 * - `featuresNearDirection`: features whose decoder direction is nearest a given vector (a steering
 *   or refusal direction) by cosine.
 */
import { FeaturesError } from "../core/errors.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import { type Dictionary, isLayerwise } from "../dictionaries/types.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { parseSite } from "../model/gemma3/sites.js";
import type { FeatureDatabase, SpaceRow } from "./db.js";
import { decoderMatrix, extremes } from "./directions.js";

export interface FeatureRef {
  readonly space: number;
  readonly dictionary: string;
  /** CLT source layer, else null. */
  readonly layer: number | null;
  readonly feature: number;
}

export interface TokenHit extends FeatureRef {
  readonly activation: number;
  /** activation / the feature's max over the corpus (null when it never fired there). */
  readonly relative: number | null;
  readonly density: number | null;
}

export interface TextToken {
  readonly position: number;
  readonly id: number;
  readonly token: string;
  readonly features: readonly TokenHit[];
}

function ref(s: SpaceRow, feature: number): FeatureRef {
  return { space: s.space, dictionary: s.dictionary, layer: s.layer, feature };
}

/** The stored density and max of features (space, feature) -> [density, max]. */
function featureStats(
  db: FeatureDatabase,
  space: number,
  feature: number,
): { density: number; max: number } | null {
  const row = db.handle
    .prepare("SELECT density, max FROM features WHERE space = ? AND feature = ?")
    .get(space, feature) as { density: number; max: number } | undefined;
  return row ?? null;
}

/**
 * Runs `model` on `ids` and lists each token's `top` features over every space of the database
 * (`dictionaries[i]` is the loaded dictionary of `db.spaces()`' dictionary path i, in order).
 * `by`: "relative" ranks by activation / corpus max, "activation" by raw activation.
 */
export function featuresOnText(
  db: FeatureDatabase,
  model: Gemma3Model,
  dictionaries: ReadonlyMap<string, Dictionary>,
  ids: readonly number[],
  options: { readonly top?: number; readonly by?: "relative" | "activation" } = {},
): TextToken[] {
  const top = options.top ?? 10;
  const by = options.by ?? "relative";
  const spaces = db.spaces();
  const captured = new Map<string, Tensor<"f32">>();
  const interventions: Intervention[] = [];
  for (const s of spaces) {
    if (captured.has(s.site) || interventions.some((i) => i.site.name === s.site)) continue;
    const site = parseSite(s.site, model.config);
    interventions.push({
      site,
      apply: (x) => {
        captured.set(site.name, x);
        return x;
      },
    });
  }
  model.forward([ids], { interventions, logits: "none" });
  const perToken: TokenHit[][] = ids.map(() => []);
  for (const s of spaces) {
    const dict = dictionaries.get(s.dictionary);
    if (dict === undefined) throw new FeaturesError(`dictionary ${s.dictionary} was not loaded`);
    const x = captured.get(s.site);
    if (x === undefined) throw new FeaturesError(`the forward pass did not reach ${s.site}`);
    const rows = fromStorage(x.backend, "f32", [ids.length, x.shape[x.rank - 1]], x.data);
    const acts = isLayerwise(dict) && s.layer !== null ? dict.encodeLayer(s.layer, rows) : dict.encode(rows);
    for (let p = 0; p < ids.length; p++) {
      const row = acts.row(p);
      for (let j = 0; j < row.indices.length; j++) {
        const v = row.values[j];
        if (!(v > 0)) continue;
        const st = featureStats(db, s.space, row.indices[j]);
        perToken[p].push({
          ...ref(s, row.indices[j]),
          activation: v,
          relative: st !== null && st.max > 0 ? v / st.max : null,
          density: st?.density ?? null,
        });
      }
    }
  }
  const key = (h: TokenHit) => (by === "relative" ? (h.relative ?? 0) : h.activation);
  const texts = db.tokenTexts(ids);
  return ids.map((id, position) => ({
    position,
    id,
    token: texts[position],
    features: perToken[position]
      .sort(
        (a, b) =>
          key(b) - key(a) || b.activation - a.activation || a.space - b.space || a.feature - b.feature,
      )
      .slice(0, top),
  }));
}

export interface ContextHit extends FeatureRef {
  /** Top contexts that contain the token or string. */
  readonly contexts: number;
  readonly maxActivation: number;
}

/**
 * Features whose top contexts contain `query`: as a token when it is exactly a vocabulary piece's
 * text (e.g. " river"), else as a substring of the contexts' text. Ranked by the number of top
 * contexts containing it, then max activation.
 */
export function featuresByContext(
  db: FeatureDatabase,
  query: string,
  limit = 20,
): { mode: "token" | "substring"; tokens: number[]; hits: ContextHit[] } {
  if (query === "") throw new FeaturesError("the search string is empty", "--token");
  db.requireComplete();
  const spaces = new Map(db.spaces().map((s) => [s.space, s]));
  const tokens = db.tokensWithText(query);
  type Row = { space: number; feature: number; contexts: number; max: number };
  let rows: Row[];
  let mode: "token" | "substring";
  if (tokens.length > 0) {
    mode = "token";
    rows = db.handle
      .prepare(
        `SELECT c.space, c.feature, SUM(c.hits) AS contexts, f.max AS max FROM context_tokens c
         JOIN features f ON f.space = c.space AND f.feature = c.feature
         WHERE c.token IN (${tokens.map(() => "?").join(",")})
         GROUP BY c.space, c.feature ORDER BY contexts DESC, max DESC, c.space, c.feature LIMIT ?`,
      )
      .all(...tokens, limit) as Row[];
  } else {
    mode = "substring";
    rows = db.handle
      .prepare(
        `SELECT e.space, e.feature, COUNT(*) AS contexts, f.max AS max FROM examples e
         JOIN features f ON f.space = e.space AND f.feature = e.feature
         WHERE e.grp = 0 AND instr(e.text, ?) > 0
         GROUP BY e.space, e.feature ORDER BY contexts DESC, max DESC, e.space, e.feature LIMIT ?`,
      )
      .all(query, limit) as Row[];
  }
  return {
    mode,
    tokens,
    hits: rows.map((r) => ({
      ...ref(spaces.get(r.space) as SpaceRow, r.feature),
      contexts: r.contexts,
      maxActivation: r.max,
    })),
  };
}

export interface LogitHit extends FeatureRef {
  readonly token: number;
  /** The feature's logit effect on the token. */
  readonly value: number;
  /** The token's rank among the feature's promoted tokens (0 = top). */
  readonly rank: number;
}

/** Features that have `query` (a vocabulary piece's exact text) among their top promoted tokens. */
export function featuresByLogit(
  db: FeatureDatabase,
  query: string,
  limit = 20,
): { tokens: number[]; hits: LogitHit[] } {
  db.requireComplete();
  const tokens = db.tokensWithText(query);
  if (tokens.length === 0) {
    const near = db.handle
      .prepare("SELECT text FROM vocab WHERE instr(text, ?) > 0 ORDER BY length(text), id LIMIT 5")
      .all(query.trim() === "" ? query : query.trim()) as { text: string }[];
    throw new FeaturesError(
      `${JSON.stringify(query)} is not a token of the vocabulary${near.length > 0 ? `; tokens containing it: ${near.map((n) => JSON.stringify(n.text)).join(", ")}` : ""}`,
      "--promotes",
    );
  }
  const spaces = new Map(db.spaces().map((s) => [s.space, s]));
  const rows = db.handle
    .prepare(
      `SELECT space, feature, token, value, rank FROM logits WHERE sign = 1 AND token IN (${tokens.map(() => "?").join(",")})
       ORDER BY value DESC, space, feature LIMIT ?`,
    )
    .all(...tokens, limit) as {
    space: number;
    feature: number;
    token: number;
    value: number;
    rank: number;
  }[];
  return {
    tokens,
    hits: rows.map((r) => ({
      ...ref(spaces.get(r.space) as SpaceRow, r.feature),
      token: r.token,
      value: r.value,
      rank: r.rank,
    })),
  };
}

export interface DirectionHit extends FeatureRef {
  readonly cosine: number;
}

/**
 * Features whose decoder direction (its write into the residual stream, summed over a CLT's
 * targets) has the highest cosine with `direction` [d_out], over every space of matching width.
 * `sign: -1` lists the most anti-aligned instead.
 */
export function featuresNearDirection(
  db: FeatureDatabase,
  dictionaries: ReadonlyMap<string, Dictionary>,
  direction: Float32Array,
  options: { readonly limit?: number; readonly sign?: 1 | -1 } = {},
): DirectionHit[] {
  const limit = options.limit ?? 20;
  const sign = options.sign ?? 1;
  let norm = 0;
  for (const v of direction) norm += v * v;
  if (!(norm > 0) || !Number.isFinite(norm))
    throw new FeaturesError("the direction is zero or not finite", "--direction");
  const u = direction.map((v) => v / Math.sqrt(norm));
  const hits: DirectionHit[] = [];
  let matched = 0;
  for (const s of db.spaces()) {
    const dict = dictionaries.get(s.dictionary);
    if (dict === undefined) throw new FeaturesError(`dictionary ${s.dictionary} was not loaded`);
    if (dict.spec.dOut !== u.length) continue;
    matched++;
    const dec = decoderMatrix(dict, s.layer);
    const d = dec.dOut;
    const cos = new Float32Array(dec.width);
    for (let f = 0; f < dec.width; f++) {
      let dot = 0;
      let nn = 0;
      for (let j = 0; j < d; j++) {
        const w = dec.residual[f * d + j];
        dot += w * u[j];
        nn += w * w;
      }
      cos[f] = nn > 0 ? dot / Math.sqrt(nn) : Number.NaN;
    }
    for (const e of extremes(cos, limit, sign)) hits.push({ ...ref(s, e.id), cosine: e.value });
  }
  if (matched === 0) {
    throw new FeaturesError(
      `the direction has ${u.length} values but no dictionary of the database writes vectors of that width`,
      "--direction",
    );
  }
  return hits
    .sort((a, b) => sign * (b.cosine - a.cosine) || a.space - b.space || a.feature - b.feature)
    .slice(0, limit);
}
