/**
 * Interventions read off an attribution graph (circuit-tracer's `feature_intervention`): set or
 * scale a feature (layer, position, index), or ablate an error node, and see what the model does.
 * Setting feature f at (l, p) to v adds (v - a) d_{f,t} at mlp_out of each target layer t of the
 * feature at position p (a = its activation on the prompt); ablating an error node subtracts it.
 *
 * Two ways to run the edit:
 * - "frozen": through the local replacement model, attention patterns, norm denominators and every
 *   other feature fixed at their values on the prompt: the edit's direct effects, exactly what the
 *   graph's edges describe;
 * - "live": in the real model, where everything downstream is recomputed (attention, norms, MLPs);
 *   also for generation, where the edits apply at the prompt's positions.
 */
import { CircuitError } from "../core/errors.js";
import { add } from "../core/ops/elementwise.js";
import { matmul } from "../core/ops/linalg.js";
import { makeF32 } from "../core/ops/util.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import { sites } from "../model/gemma3/sites.js";
import { propagate, type Write } from "./linear.js";
import type { LocalReplacement } from "./replacement.js";

export type GraphEdit =
  | {
      readonly kind: "feature";
      readonly layer: number;
      readonly position: number;
      readonly feature: number;
      /** Set to this value... */
      readonly value?: number;
      /** ...or multiply the activation by this. */
      readonly scale?: number;
    }
  | { readonly kind: "error"; readonly layer: number; readonly position: number };

/** The feature's activation on the prompt (0 where it did not fire). */
export function activationOf(
  rep: LocalReplacement,
  layer: number,
  position: number,
  feature: number,
): number {
  const f = rep.features;
  for (let i = 0; i < f.count; i++)
    if (f.layer[i] === layer && f.position[i] === position && f.feature[i] === feature)
      return f.activation[i];
  // Not a node (inactive, or at BOS): encode that position.
  const D = rep.model.config.dModel;
  const row = rep.layers[layer].mlpIn.subarray(position * D, (position + 1) * D);
  const acts = rep.transcoders.encode(layer, makeF32(rep.backend, [1, D], row.slice())).row(0);
  const k = acts.indices.indexOf(feature);
  return k < 0 ? 0 : acts.values[k];
}

function check(rep: LocalReplacement, e: GraphEdit): void {
  const L = rep.layers.length;
  if (!Number.isInteger(e.layer) || e.layer < 0 || e.layer >= L)
    throw new CircuitError(`layer ${e.layer} is out of range (0-${L - 1})`, "--set");
  if (!Number.isInteger(e.position) || e.position < 0 || e.position >= rep.length)
    throw new CircuitError(`position ${e.position} is out of range (0-${rep.length - 1})`, "--set");
  if (e.kind === "feature") {
    const w = rep.transcoders.widths[e.layer];
    if (!Number.isInteger(e.feature) || e.feature < 0 || e.feature >= w)
      throw new CircuitError(
        `feature ${e.feature} is out of range: layer ${e.layer} has ${w} features`,
        "--set",
      );
    if ((e.value === undefined) === (e.scale === undefined))
      throw new CircuitError("a feature edit needs exactly one of a value or a scale", "--set");
  }
}

/** The additive writes that carry out `edits`. */
export function editWrites(rep: LocalReplacement, edits: readonly GraphEdit[]): Write[] {
  const D = rep.model.config.dModel;
  const out: Write[] = [];
  for (const e of edits) {
    check(rep, e);
    if (e.kind === "error") {
      const v = rep.layers[e.layer].error.slice(e.position * D, (e.position + 1) * D);
      out.push({ layer: e.layer, position: e.position, vector: v.map((x) => -x) });
      continue;
    }
    const a = activationOf(rep, e.layer, e.position, e.feature);
    const target = e.value ?? a * (e.scale as number);
    const delta = target - a;
    if (delta === 0) continue;
    const rows = rep.transcoders.decoderRows(e.layer, e.feature);
    rep.transcoders.targetLayers(e.layer).forEach((t, k) => {
      out.push({ layer: t, position: e.position, vector: rows[k].map((x) => x * delta) });
    });
  }
  return out;
}

/** Last-position logits [vocab] after the edits, in the frozen replacement model. */
export function frozenLogits(rep: LocalReplacement, edits: readonly GraphEdit[]): Float32Array {
  const c = rep.model.config;
  const D = c.dModel;
  const T = rep.length;
  const p = propagate(rep, editWrites(rep, edits));
  const r = rep.final.rinv[T - 1];
  const x = new Float32Array(D);
  for (let j = 0; j < D; j++) x[j] = p.final[(T - 1) * D + j] * r * rep.final.g[j];
  const delta = matmul(makeF32(rep.backend, [1, D], x), rep.model.weights.lmHead, { transB: true }).data;
  const out = rep.lastLogits.slice();
  for (let v = 0; v < out.length; v++) out[v] += delta[v];
  return out;
}

/** Model interventions (for `forward` or `generate`) that make the edits in the real model. */
export function liveInterventions(rep: LocalReplacement, edits: readonly GraphEdit[]): Intervention[] {
  const D = rep.model.config.dModel;
  const byLayer = new Map<number, Write[]>();
  for (const w of editWrites(rep, edits)) {
    const list = byLayer.get(w.layer) ?? [];
    list.push(w);
    byLayer.set(w.layer, list);
  }
  return [...byLayer].map(([layer, writes]) => ({
    site: sites.mlpOut(layer),
    positions: [...new Set(writes.map((w) => w.position))],
    apply: (act, ctx) => {
      // act [batch, seq, D]; ctx.positions gives each seq entry's sequence index.
      const [batch, seq] = act.shape;
      const delta = new Float32Array(act.size);
      for (const w of writes) {
        const s = ctx.positions.indexOf(w.position);
        if (s < 0) continue;
        for (let b = 0; b < batch; b++) {
          const base = (b * seq + s) * D;
          for (let j = 0; j < D; j++) delta[base + j] += w.vector[j];
        }
      }
      return add(act, makeF32(act.backend, act.shape, delta));
    },
  }));
}
