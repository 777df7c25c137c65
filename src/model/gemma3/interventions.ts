/**
 * Interventions: functions that replace an activation at a hook site during the forward pass (and
 * generation), optionally at chosen token positions only. Several run in list order at each site;
 * capture (the forward's `capture` option) sees the value after them.
 *
 * Every helper is written with differentiable ops, so a forward with interventions can run inside
 * `grad()` (e.g. the gradient of a loss with respect to a steering vector). Position selection
 * blends with `where`, so unselected positions pass through untouched, values and gradients.
 * Follows the hook-function model of TransformerLens / nnsight, as data (`{ site, positions, apply }`).
 */
import { TensorError } from "../../core/errors.js";
import { cast } from "../../core/ops/cast.js";
import { add, mul, rsqrt, sub, where } from "../../core/ops/elementwise.js";
import { sum } from "../../core/ops/reduce.js";
import { broadcastTo } from "../../core/ops/shape.js";
import { makeF32 } from "../../core/ops/util.js";
import { formatShape, type Tensor, zeros } from "../../core/tensor.js";
import type { Gemma3Config } from "./config.js";
import type { Site } from "./sites.js";

export interface InterventionContext {
  readonly site: Site;
  readonly config: Gemma3Config;
  /** Sequence index (counting cached tokens) of each entry along the site's seq axis. */
  readonly positions: Int32Array;
}

export interface Intervention {
  readonly site: Site;
  /** Sequence indices (0 = first token, counting tokens already in a KV cache) to change; all when omitted. */
  readonly positions?: readonly number[];
  /** The new activation (same shape, f32) from the current one. */
  readonly apply: (act: Tensor<"f32">, ctx: InterventionContext) => Tensor<"f32">;
}

export interface PositionOptions {
  /** Sequence indices to change; all positions when omitted. */
  readonly positions?: readonly number[];
}

function withPositions(site: Site, options: PositionOptions, apply: Intervention["apply"]): Intervention {
  return options.positions === undefined
    ? { site, apply }
    : { site, positions: [...options.positions], apply };
}

/** A 0/1 mask shaped to broadcast over `shape`, 1 on the selected sequence entries. */
function positionMask(
  act: Tensor,
  seqAxis: number,
  at: Int32Array,
  positions: readonly number[],
): Tensor<"f32"> | null {
  const wanted = new Set(positions);
  const mask = new Float32Array(at.length);
  let any = false;
  for (let i = 0; i < at.length; i++) {
    if (wanted.has(at[i])) {
      mask[i] = 1;
      any = true;
    }
  }
  if (!any) return null;
  const shape = act.shape.map((d, i) => (i === seqAxis ? d : 1));
  return makeF32(act.backend, shape, mask);
}

/** Runs `list` in order on `act` (interventions for other sites are skipped). */
export function applyInterventions(
  act: Tensor<"f32">,
  list: readonly Intervention[],
  ctx: InterventionContext,
): Tensor<"f32"> {
  let x = act;
  for (const iv of list) {
    if (iv.site.name !== ctx.site.name) continue;
    let mask: Tensor<"f32"> | null = null;
    if (iv.positions !== undefined) {
      mask = positionMask(x, ctx.site.seqAxis, ctx.positions, iv.positions);
      if (mask === null) continue;
    }
    const y = iv.apply(x, ctx);
    if (y.dtype !== "f32" || y.rank !== x.rank || y.shape.some((d, i) => d !== x.shape[i])) {
      throw new TensorError(
        `intervention at ${ctx.site.name} returned ${y.dtype} ${formatShape(y.shape)}, expected f32 ${formatShape(x.shape)}`,
      );
    }
    x = mask === null ? y : where(mask, y, x);
  }
  return x;
}

function asF32(t: Tensor): Tensor<"f32"> {
  return t.dtype === "f32" ? (t as Tensor<"f32">) : cast(t, "f32");
}

/** Calls `onValue` with the activation (as it is at this point of the list) and leaves it unchanged. */
export function capture(
  site: Site,
  onValue: (act: Tensor<"f32">, ctx: InterventionContext) => void,
  options: PositionOptions = {},
): Intervention {
  return withPositions(site, options, (x, ctx) => {
    onValue(x, ctx);
    return x;
  });
}

/** Replaces the activation by `value`, broadcast to its shape (e.g. [d_model] or the full shape). */
export function replace(site: Site, value: Tensor, options: PositionOptions = {}): Intervention {
  const v = asF32(value);
  return withPositions(site, options, (x) => broadcastTo(v, x.shape));
}

export interface AddOptions extends PositionOptions {
  /** Multiplies the vector first (default 1). */
  readonly scale?: number;
}

/** Adds `scale * vector` (broadcast; usually [d_model]): activation steering. */
export function addVector(site: Site, vector: Tensor, options: AddOptions = {}): Intervention {
  const scale = options.scale ?? 1;
  const v = asF32(vector);
  return withPositions(site, options, (x) => add(x, scale === 1 ? v : mul(v, scale)));
}

/** Multiplies the activation by `s`. */
export function scaleBy(site: Site, s: number, options: PositionOptions = {}): Intervention {
  return withPositions(site, options, (x) => mul(x, s));
}

/** Sets the activation to zero. */
export function zeroAblate(site: Site, options: PositionOptions = {}): Intervention {
  return withPositions(site, options, (x) => zeros(x.backend, x.shape));
}

/** Sets the activation to `mean` (broadcast; usually a [d_model] mean over a dataset). */
export function meanAblate(site: Site, mean: Tensor, options: PositionOptions = {}): Intervention {
  return replace(site, mean, options);
}

/**
 * Removes the component along `direction` (over the last axis): x - (x . u) u with u = d / |d|.
 * Afterwards x . d = 0 at every changed position.
 */
export function projectOut(site: Site, direction: Tensor, options: PositionOptions = {}): Intervention {
  const d = asF32(direction);
  if (d.rank !== 1) throw new TensorError(`projectOut: direction must be 1-d, got ${formatShape(d.shape)}`);
  const norm2 = sum(mul(d, d)).item();
  if (!(norm2 > 0) || !Number.isFinite(norm2))
    throw new TensorError("projectOut: direction must be non-zero and finite");
  return withPositions(site, options, (x) => {
    const u = mul(d, rsqrt(sum(mul(d, d))));
    return sub(x, mul(sum(mul(x, u), -1, true), u));
  });
}

/** The helpers under their short names: `interventions.add(sites.residPost(3), v, { scale: 4 })`. */
export const interventions = {
  capture,
  replace,
  add: addVector,
  scale: scaleBy,
  zeroAblate,
  meanAblate,
  projectOut,
} as const;
