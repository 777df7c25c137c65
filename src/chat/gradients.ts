/**
 * Gradients of a scalar read from the logits with respect to the activation at one hook site, for
 * the chat analyses' gradient x activation attributions (feature attribution to the refusal score,
 * hint-token attribution to an answer). One backward pass through the real model: a zero tensor is
 * added at the site and differentiated (src/core/autograd.ts).
 */
import { valueAndGrad } from "../core/autograd.js";
import { ChatError } from "../core/errors.js";
import { add, exp, log, mul, sub } from "../core/ops/elementwise.js";
import { logSoftmax } from "../core/ops/nn.js";
import { sum } from "../core/ops/reduce.js";
import { narrow, reshape } from "../core/ops/shape.js";
import { fromStorage, type Tensor, zeros } from "../core/tensor.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import type { Site } from "../model/gemma3/sites.js";

export interface SiteGradient {
  /** The objective's value. */
  readonly value: number;
  /** The site's activation [seq * d] (batch 1). */
  readonly activation: Float32Array;
  /** d objective / d activation [seq * d]. */
  readonly gradient: Float32Array;
}

/**
 * `objective` gets the logits ([1, 1, vocab] with `logits: "last"`, else [1, seq, vocab]) and
 * returns a one-element tensor.
 */
export function siteGradient(
  model: Gemma3Model,
  ids: readonly number[],
  site: Site,
  objective: (logits: Tensor<"f32">) => Tensor<"f32">,
  options: { readonly logits?: "last" | "all"; readonly interventions?: readonly Intervention[] } = {},
): SiteGradient {
  site.check(model.config);
  const shape = site.shape(model.config, 1, ids.length);
  let activation: Float32Array | null = null;
  const f = (p: { delta: Tensor }) => {
    const probe: Intervention = {
      site,
      apply: (x) => {
        activation = x.toFloat32Array().slice();
        return add(x, p.delta);
      },
    };
    const out = model.forward([[...ids]], {
      logits: options.logits ?? "last",
      interventions: [...(options.interventions ?? []), probe],
    });
    return objective(out.logits);
  };
  const { value, grads } = valueAndGrad(f)({ delta: zeros(model.backend, shape) });
  if (activation === null) throw new ChatError(`${site.name} was never reached`);
  return { value: value.item(), activation, gradient: grads.delta.toFloat32Array() };
}

/** log p - log(1 - p), p = the summed probability of `tokens` in logits [.., vocab] (one row). */
export function refusalScoreTensor(logits: Tensor<"f32">, tokens: readonly number[]): Tensor<"f32"> {
  const V = logits.shape[logits.shape.length - 1];
  const mask = new Float32Array(V);
  for (const t of tokens) mask[t] = 1;
  const lp = logSoftmax(reshape(logits, [-1, V]));
  const p = sum(mul(exp(lp), fromStorage(logits.backend, "f32", [V], mask)));
  const eps = 1e-12;
  return sub(log(add(p, eps)), log(add(sub(1, p), eps)));
}

/** log p(token) at sequence index `position` of logits [1, seq, vocab]. */
export function tokenLogProb(logits: Tensor<"f32">, position: number, token: number): Tensor<"f32"> {
  const V = logits.shape[2];
  const row = reshape(narrow(logits, 1, position, 1), [V]);
  return reshape(narrow(logSoftmax(row), 0, token, 1), []);
}
