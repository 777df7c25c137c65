/**
 * Random transcoder sets for the circuit tests and benchmarks: per-layer transcoders,
 * skip-transcoders and a cross-layer transcoder for any Gemma 3 config, JumpReLU with thresholds
 * set so that a fixed share of features fires, hooked at mlp_in -> mlp_out as Gemma Scope 2's are.
 */
import type { Backend } from "../../src/core/backend.js";
import { randomNormal } from "../../src/core/random.js";
import { jumpRelu } from "../../src/dictionaries/activations/jumprelu.js";
import { CrossLayerTranscoder } from "../../src/dictionaries/architectures/clt.js";
import { SkipTranscoder } from "../../src/dictionaries/architectures/skip-transcoder.js";
import { Transcoder } from "../../src/dictionaries/architectures/transcoder.js";
import type { Dictionary } from "../../src/dictionaries/types.js";
import type { Gemma3Config } from "../../src/model/gemma3/config.js";

const hookIn = (l: number | string) => `model.layers.${l}.pre_feedforward_layernorm.output`;
const hookOut = (l: number | string) => `model.layers.${l}.post_feedforward_layernorm.output`;

export type RandomKind = "transcoders" | "skip" | "clt";

/**
 * Random dictionaries of `kind` for `config`, `width` features per layer, seeded. Pre-activations
 * are about N(b_enc, 1) on a normed input; `threshold` (mean JumpReLU threshold, default 0.6) sets
 * how many fire (0.6: about a quarter; 2.6: about 0.5 %).
 */
export function randomTranscoders(
  config: Gemma3Config,
  backend: Backend,
  kind: RandomKind,
  width: number,
  seed = 1,
  threshold = 0.6,
): Dictionary[] {
  const d = config.dModel;
  let s = seed * 7919;
  const normal = (shape: number[], std: number, mean = 0) => randomNormal(backend, shape, s++, { std, mean });
  const thresholds = () => normal([width], 0.1, threshold);
  const meta = (l: number | string) => ({
    hookIn: hookIn(l),
    hookOut: hookOut(l),
    l0: null,
    modelName: null,
    source: `random-${kind}-${l}`,
  });
  if (kind === "clt") {
    const L = config.layers;
    const layers = Array.from({ length: L }, () => ({
      wEnc: normal([d, width], 1 / Math.sqrt(d)),
      bEnc: normal([width], 0.2),
      wDec: normal([width, L, d], 0.5 / Math.sqrt(width)),
      bDec: normal([d], 0.1),
      skip: null,
      activation: jumpRelu(thresholds()),
    }));
    return [
      new CrossLayerTranscoder(
        {
          layers: L,
          dIn: d,
          dOut: d,
          width,
          skip: false,
          dtype: "f32",
          activation: { kind: "jumprelu" },
          load: (i) => layers[i],
        },
        meta("{all}"),
      ),
    ];
  }
  return Array.from({ length: config.layers }, (_, l) => {
    const params = {
      wEnc: normal([d, width], 1 / Math.sqrt(d)),
      bEnc: normal([width], 0.2),
      wDec: normal([width, d], 1 / Math.sqrt(width)),
      bDec: normal([d], 0.1),
      skip: kind === "skip" ? normal([d, d], 0.3 / Math.sqrt(d)) : null,
    };
    const act = jumpRelu(thresholds());
    return kind === "skip" ? new SkipTranscoder(params, act, meta(l)) : new Transcoder(params, act, meta(l));
  });
}
