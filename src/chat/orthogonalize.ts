/**
 * Weight orthogonalisation of a refusal (or any) direction r, written out as a new checkpoint that
 * loads like any other (Arditi et al. 2024, section 4.1: every matrix that writes to the residual
 * stream is made orthogonal to r, so that no component can write along it).
 *
 * Gemma 3 differs from the models of the paper: each component's output passes an RMSNorm with its
 * own scale g = 1 + w (post_attention_layernorm, post_feedforward_layernorm) before it is added to
 * the residual stream. A projection of o_proj against r itself would not survive that norm. Since
 * norm(x) . r = (x . (g * r)) / rms(x), the output of a component is orthogonal to r exactly when
 * its pre-norm output is orthogonal to u = g * r / |g * r|, so:
 * - o_proj and down_proj of layer l: W <- (I - u u^T) W with u from that layer's post-norm;
 * - embed_tokens: every row loses its r component (the sqrt(d_model) scale is a scalar);
 * - the unembedding keeps the original table: a tied checkpoint is written untied (lm_head.weight).
 * Then the residual stream has zero projection on r at every site, as with runtime ablation, but
 * the two are not the same function: runtime ablation projects after the norm, which rescales the
 * other directions differently. `componentAblationInterventions` is the runtime intervention the
 * new weights compute, used to check them and to compare with `ablationInterventions`.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Backend } from "../core/backend.js";
import type { FloatDType } from "../core/dtype.js";
import { ChatError } from "../core/errors.js";
import { cast } from "../core/ops/cast.js";
import { add, mul, rsqrt, sub } from "../core/ops/elementwise.js";
import { mean, sum } from "../core/ops/reduce.js";
import { fromStorage, type Tensor } from "../core/tensor.js";
import { writeFileAtomicSync } from "../io/atomic-file.js";
import { openSafetensors } from "../io/safetensors-sharded.js";
import { SafetensorsWriter, type TensorSpec } from "../io/safetensors-write.js";
import { loadGemma3Config } from "../model/gemma3/config.js";
import type { Intervention } from "../model/gemma3/interventions.js";
import { projectOut } from "../model/gemma3/interventions.js";
import type { Gemma3Model } from "../model/gemma3/model.js";
import { sites } from "../model/gemma3/sites.js";
import { detectPrefix } from "../model/gemma3/weights.js";

function unit(v: Float32Array | Float64Array, what: string): Float64Array {
  let n = 0;
  for (const x of v) n += x * x;
  if (!(n > 0) || !Number.isFinite(n)) throw new ChatError(`${what} is zero or not finite`);
  const s = 1 / Math.sqrt(n);
  return Float64Array.from(v, (x) => x * s);
}

/** u = g * r / |g * r| for a norm weight w (scale g = 1 + w). */
export function preNormDirection(normWeight: Float32Array, r: Float32Array): Float64Array {
  if (normWeight.length !== r.length)
    throw new ChatError(`the direction has ${r.length} entries; the norm has ${normWeight.length}`);
  return unit(
    Float64Array.from(r, (x, j) => (1 + normWeight[j]) * x),
    "the direction scaled by the post-norm",
  );
}

/** The pre-norm directions of every layer's attention and MLP output. */
export function componentDirections(
  model: Gemma3Model,
  r: Float32Array,
): { readonly attn: Float64Array[]; readonly mlp: Float64Array[] } {
  checkLength(model, r);
  const w = model.weights.layers;
  return {
    attn: w.map((lw) => preNormDirection(lw.postAttentionNorm.toFloat32Array(), r)),
    mlp: w.map((lw) => preNormDirection(lw.postFeedforwardNorm.toFloat32Array(), r)),
  };
}

function checkLength(model: Gemma3Model, r: Float32Array): void {
  if (r.length !== model.config.dModel)
    throw new ChatError(
      `the direction has ${r.length} entries; the model's residual stream has ${model.config.dModel}`,
    );
}

/**
 * At a post-norm site y = g * x / rms(x): recovers x / rms(x) = y / g, removes its u component and
 * normalises again. Equal to norm(x - (x . u) u) up to the norm's eps (relative 1e-6 scale).
 */
function preNormProjection(
  backend: Backend,
  site: ReturnType<typeof sites.attnOut>,
  normWeight: Float32Array,
  u: Float64Array,
  eps: number,
): Intervention {
  const g = Float32Array.from(normWeight, (w) => 1 + w);
  if (g.some((v) => v === 0))
    throw new ChatError(`${site.name}: the post-norm has a zero scale; its input cannot be recovered`);
  const gT = fromStorage(backend, "f32", [g.length], g);
  const invG = fromStorage(
    backend,
    "f32",
    [g.length],
    Float32Array.from(g, (v) => 1 / v),
  );
  const uT = fromStorage(backend, "f32", [u.length], Float32Array.from(u));
  return {
    site,
    apply: (y) => {
      const xh = mul(y, invG);
      const p = sub(xh, mul(sum(mul(xh, uT), -1, true), uT));
      return mul(mul(p, rsqrt(add(mean(mul(p, p), -1, true), eps))), gT);
    },
  };
}

/**
 * What `orthogonalizeCheckpoint`'s weights compute, as interventions on the original model: r
 * projected out of the embedding, and u_l out of every attention and MLP output before its norm.
 */
export function componentAblationInterventions(model: Gemma3Model, r: Float32Array): Intervention[] {
  const dirs = componentDirections(model, r);
  const b = model.backend;
  const eps = model.config.rmsNormEps;
  const out: Intervention[] = [projectOut(sites.embed, fromStorage(b, "f32", [r.length], r.slice()))];
  model.weights.layers.forEach((lw, l) => {
    out.push(
      preNormProjection(b, sites.attnOut(l), lw.postAttentionNorm.toFloat32Array(), dirs.attn[l], eps),
      preNormProjection(b, sites.mlpOut(l), lw.postFeedforwardNorm.toFloat32Array(), dirs.mlp[l], eps),
    );
  });
  return out;
}

/** W [out, in] <- (I - u u^T) W: every column loses its u component. */
export function projectColumns(w: Float32Array, rows: number, cols: number, u: Float64Array): void {
  const c = new Float64Array(cols);
  for (let i = 0; i < rows; i++) {
    const ui = u[i];
    for (let j = 0; j < cols; j++) c[j] += ui * w[i * cols + j];
  }
  for (let i = 0; i < rows; i++) {
    const ui = u[i];
    for (let j = 0; j < cols; j++) w[i * cols + j] -= ui * c[j];
  }
}

/** Every row of W [rows, cols] loses its u component (u over the columns). */
export function projectRows(w: Float32Array, rows: number, cols: number, u: Float64Array): void {
  for (let i = 0; i < rows; i++) {
    let d = 0;
    for (let j = 0; j < cols; j++) d += u[j] * w[i * cols + j];
    for (let j = 0; j < cols; j++) w[i * cols + j] -= d * u[j];
  }
}

export interface OrthogonalizeOptions {
  /** dtype of the written tensors: the source's (default) or f32 (exact projections). */
  readonly dtype?: FloatDType | "source";
  /** Called after each tensor is written. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface OrthogonalizeReport {
  readonly out: string;
  readonly changed: readonly string[];
  readonly tensors: number;
  /** True when a tied checkpoint was written with its own lm_head.weight. */
  readonly untied: boolean;
}

const CHECKPOINT_FILE = /\.safetensors(\.index\.json)?$/;

/**
 * Writes `src` with r orthogonalised out of its weights to the new directory `out` (config.json
 * with tie_word_embeddings false, the tokenizer and other non-weight files copied except the model
 * card, one model.safetensors). The directory appears complete or not at all: it is built beside
 * `out` and renamed.
 */
export async function orthogonalizeCheckpoint(
  src: string,
  r: Float32Array,
  out: string,
  backend: Backend,
  options: OrthogonalizeOptions = {},
): Promise<OrthogonalizeReport> {
  const config = loadGemma3Config(src);
  if (r.length !== config.dModel)
    throw new ChatError(`the direction has ${r.length} entries; ${src} has d_model ${config.dModel}`);
  if (resolve(src) === resolve(out)) throw new ChatError(`the output ${out} is the source checkpoint`);
  if (existsSync(out)) throw new ChatError(`${out} already exists; give a new directory`);
  const st = openSafetensors(src);
  const tmp = `${out}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const prefix = detectPrefix(st);
    const ru = unit(r, "the direction");
    const r32 = Float32Array.from(r);
    const embedName = `${prefix}embed_tokens.weight`;
    const kind = new Map<string, { u: Float64Array; by: "columns" | "rows" }>();
    kind.set(embedName, { u: ru, by: "rows" });
    for (let l = 0; l < config.layers; l++) {
      const norm = (n: string) =>
        st.readTensorSync(`${prefix}layers.${l}.${n}.weight`, backend).toFloat32Array();
      kind.set(`${prefix}layers.${l}.self_attn.o_proj.weight`, {
        u: preNormDirection(norm("post_attention_layernorm"), r32),
        by: "columns",
      });
      kind.set(`${prefix}layers.${l}.mlp.down_proj.weight`, {
        u: preNormDirection(norm("post_feedforward_layernorm"), r32),
        by: "columns",
      });
    }
    for (const n of kind.keys())
      if (!st.has(n)) throw new ChatError(`${src} has no tensor ${JSON.stringify(n)}`);
    const untied = config.tieWordEmbeddings;
    const names = st.names();
    if (untied && names.some((n) => n.endsWith("lm_head.weight")))
      throw new ChatError(`${src}: tie_word_embeddings is true but the checkpoint has an lm_head`);
    const wanted = options.dtype === undefined || options.dtype === "source" ? null : options.dtype;
    const STORED = { f32: "F32", bf16: "BF16", f16: "F16" } as const;
    const specs = new Map<string, TensorSpec>();
    for (const n of names) {
      const info = st.info(n);
      const isFloat = info.dtype === "F32" || info.dtype === "BF16" || info.dtype === "F16";
      specs.set(n, { dtype: isFloat && wanted !== null ? STORED[wanted] : info.dtype, shape: info.shape });
    }
    if (untied) specs.set("lm_head.weight", specs.get(embedName)!);
    const w = await SafetensorsWriter.create(join(tmp, "model.safetensors"), specs, { format: "pt" });
    const changed: string[] = [];
    try {
      let done = 0;
      const write = async (name: string, t: Tensor) => {
        const dt = t.dtype === "i32" || wanted === null ? t.dtype : wanted;
        await w.write(name, (dt === t.dtype ? t : cast(t, dt)).data);
        options.onProgress?.(++done, specs.size);
      };
      for (const n of names) {
        const t = st.readTensorSync(n, backend);
        const k = kind.get(n);
        if (k === undefined) {
          await write(n, t);
          continue;
        }
        if (untied && n === embedName) await write("lm_head.weight", t);
        const [rows, cols] = t.shape;
        const v = t.toFloat32Array().slice();
        if (k.by === "rows") projectRows(v, rows, cols, k.u);
        else projectColumns(v, rows, cols, k.u);
        // Rounded back to the source dtype unless another was asked for.
        const f = fromStorage(backend, "f32", t.shape, v);
        await write(n, wanted === null && t.dtype !== "f32" ? cast(f, t.dtype) : f);
        changed.push(n);
      }
      await w.finish();
    } catch (e) {
      await w.abort();
      throw e;
    }
    // config.json: untied, the rest as it was (text_config too, for multimodal checkpoints).
    const raw = JSON.parse(readFileSync(join(src, "config.json"), "utf8")) as Record<string, unknown>;
    raw.tie_word_embeddings = false;
    const text = raw.text_config;
    if (text !== null && typeof text === "object" && !Array.isArray(text))
      (text as Record<string, unknown>).tie_word_embeddings = false;
    if (options.dtype !== undefined && options.dtype !== "source")
      raw.torch_dtype = { f32: "float32", bf16: "bfloat16", f16: "float16" }[options.dtype];
    writeFileAtomicSync(join(tmp, "config.json"), `${JSON.stringify(raw, null, 2)}\n`);
    for (const f of readdirSync(src, { withFileTypes: true })) {
      // The model card describes the source model, not this one.
      if (!f.isFile() || f.name === "config.json" || f.name === "README.md" || CHECKPOINT_FILE.test(f.name))
        continue;
      copyFileSync(join(src, f.name), join(tmp, f.name));
    }
    renameSync(tmp, out);
    return { out, changed, tensors: specs.size, untied };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    st.close();
  }
}
