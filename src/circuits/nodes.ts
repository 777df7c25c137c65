/**
 * The linear-map view of an attribution's nodes: what a source node writes into the frozen model
 * (`sourceWrites`: a feature's a·d at each target layer, an error vector, a token's embedding) and
 * what a target node reads (`targetSeed`: a feature's encoder column at resid_mid, a logit's
 * demeaned unembedding row at the final norm). `propagate` and `readSeed` (linear.ts) turn them into
 * edge values; attention.ts splits them by head.
 */
import { type Attribution, demeanedUnembedding, nodeIndex } from "./attribute.js";
import type { Seed, Write } from "./linear.js";

export function sourceWrites(a: Attribution, s: number): Write[] {
  const rep = a.replacement;
  const D = rep.model.config.dModel;
  const T = rep.length;
  const f = rep.features;
  if (s < a.nFeatures) {
    const rows = rep.transcoders.decoderRows(f.layer[s], f.feature[s]);
    return rep.transcoders.targetLayers(f.layer[s]).map((t, k) => ({
      layer: t,
      position: f.position[s],
      vector: rows[k].map((v) => v * f.activation[s]),
    }));
  }
  if (s < nodeIndex.token(a, 0)) {
    const e = s - a.nFeatures;
    const l = Math.floor(e / T);
    const p = e % T;
    return [{ layer: l, position: p, vector: rep.layers[l].error.slice(p * D, (p + 1) * D) }];
  }
  if (s < nodeIndex.logit(a, 0)) {
    const p = s - nodeIndex.token(a, 0);
    return [{ layer: -1, position: p, vector: rep.embedding.slice(p * D, (p + 1) * D) }];
  }
  return [];
}

/** The read seed of a feature or logit node (null for errors and tokens, which read nothing). */
export function targetSeed(a: Attribution, t: number): Seed | null {
  const rep = a.replacement;
  const f = rep.features;
  if (t < a.nFeatures)
    return {
      at: "mid",
      layer: f.layer[t],
      position: f.position[t],
      vector: rep.transcoders.encoderColumn(f.layer[t], f.feature[t]),
    };
  if (t < nodeIndex.logit(a, 0)) return null;
  const [vector] = demeanedUnembedding(rep, [a.logits[t - nodeIndex.logit(a, 0)].token]);
  return { at: "final", layer: rep.layers.length - 1, position: rep.length - 1, vector };
}
