/**
 * `glassbox graph --model M (--transcoders DIR... | --clt DIR) [--stats run.sqlite] --out g.json
 * [--max-feature-nodes N] [--node-threshold x] [--edge-threshold y] [--max-logits K]
 * [--logit-probability p] [--batch B] [--bos-features] [--paths K] [--json] PROMPT`: traces an
 * attribution graph (src/circuits) and writes it as Neuronpedia graph JSON; prints the graph's size,
 * scores and the strongest paths to the top logit.
 *
 * `glassbox graph intervene g.json (--set L:P:I=V | --set L:P:I*S | --ablate-error L:P)...
 * [--mode frozen|live] [--top K] [--max-tokens N] [--json]`: rebuilds the graph's replacement model
 * and shows the top logits before and after the edits, and with `--max-tokens` a greedy generation
 * (live mode).
 *
 * `--transcoders` takes dictionary folders, or folders of them (each subfolder a dictionary); the
 * set must hold exactly one transcoder per layer.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { defaultBackend } from "../../backends/index.js";
import { headSplit, qkContributions } from "../../circuits/attention.js";
import { demeanedUnembedding } from "../../circuits/attribute.js";
import { writeGraphBinary } from "../../circuits/graph-binary.js";
import {
  type GlassboxGraphInfo,
  GRAPH_FORMAT,
  GRAPH_FORMAT_VERSION,
  type GraphFile,
  readGraphFile,
  writeGraphFile,
} from "../../circuits/graph-file.js";
import { activationOf, frozenLogits, type GraphEdit, liveInterventions } from "../../circuits/intervene.js";
import { featureLabeller } from "../../circuits/labels.js";
import type { Seed, Write } from "../../circuits/linear.js";
import { neuronpediaGraph } from "../../circuits/neuronpedia-graph.js";
import { type GraphPath, topPaths } from "../../circuits/paths.js";
import { LocalReplacement } from "../../circuits/replacement.js";
import { type TraceResult, traceGraph } from "../../circuits/trace.js";
import { TranscoderSet } from "../../circuits/transcoders.js";
import { CircuitError, UsageError } from "../../core/errors.js";
import { loadDictionary } from "../../dictionaries/load.js";
import type { Dictionary } from "../../dictionaries/types.js";
import { FeatureDatabase } from "../../features/db.js";
import { Tokenizer } from "../../io/tokenizer.js";
import { generate } from "../../model/gemma3/generate.js";
import { type Gemma3Model, loadGemma3 } from "../../model/gemma3/model.js";
import {
  addModelOptions,
  type InputFlags,
  intFlag,
  jsonLine,
  numberFlag,
  prepareInput,
  tokenString,
} from "../model-input.js";

interface GraphFlags extends InputFlags {
  transcoders?: string[];
  clt?: string;
  stats?: string;
  out: string;
  maxFeatureNodes: string;
  nodeThreshold: string;
  edgeThreshold: string;
  maxLogits: string;
  logitProbability: string;
  batch: string;
  bosFeatures?: boolean;
  paths: string;
  slug?: string;
  scan?: string;
}

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

function isDictionaryFolder(dir: string): boolean {
  return existsSync(join(dir, "config.json")) || readdirSync(dir).some((f) => f.endsWith(".safetensors"));
}

/** Dictionary folders from `--transcoders` arguments: a dictionary folder, or a folder of them. */
export function expandTranscoderFolders(args: readonly string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (!existsSync(a) || !statSync(a).isDirectory())
      throw new UsageError(`${a}: no such folder`, "--transcoders");
    if (isDictionaryFolder(a)) {
      out.push(a);
      continue;
    }
    const subs = readdirSync(a)
      .map((s) => join(a, s))
      .filter((s) => statSync(s).isDirectory() && isDictionaryFolder(s))
      .sort();
    if (subs.length === 0)
      throw new UsageError(`${a}: neither a dictionary folder nor a folder of them`, "--transcoders");
    out.push(...subs);
  }
  return out;
}

interface LoadedSet {
  readonly set: TranscoderSet;
  readonly kind: "transcoders" | "clt";
  /** Dictionary folder per layer (one for a CLT). */
  readonly paths: string[];
}

function loadSet(flags: { transcoders?: string[]; clt?: string }, model: Gemma3Model): LoadedSet {
  const backend = model.backend;
  if ((flags.transcoders === undefined) === (flags.clt === undefined))
    throw new UsageError("give either --transcoders DIR... or --clt DIR");
  if (flags.clt !== undefined) {
    const d = loadDictionary(flags.clt, backend);
    try {
      return { set: TranscoderSet.from([d], model.config), kind: "clt", paths: [flags.clt] };
    } catch (e) {
      if (e instanceof CircuitError) throw new UsageError(e.message, "--clt");
      throw e;
    }
  }
  const folders = expandTranscoderFolders(flags.transcoders ?? []);
  const dicts = folders.map((f) => loadDictionary(f, backend));
  // Several candidates for one layer: say which, so the user can name them.
  const byLayer = new Map<string, string[]>();
  dicts.forEach((d, i) => {
    const key = d.spec.hookIn ?? "?";
    byLayer.set(key, [...(byLayer.get(key) ?? []), folders[i]]);
  });
  for (const list of byLayer.values())
    if (list.length > 1)
      throw new UsageError(
        `${list.length} dictionaries read the same site (${list.join(", ")}): name one folder per layer`,
        "--transcoders",
      );
  let set: TranscoderSet;
  try {
    set = TranscoderSet.from(dicts, model.config);
  } catch (e) {
    if (e instanceof CircuitError) throw new UsageError(e.message, "--transcoders");
    throw e;
  }
  const paths = new Array<string>(model.config.layers);
  dicts.forEach((d: Dictionary, i) => {
    const layer = Number(/layers\.(\d+)\./.exec(d.spec.hookIn ?? "")?.[1] ?? -1);
    if (layer >= 0) paths[layer] = folders[i];
  });
  return { set, kind: "transcoders", paths };
}

function tokenText(tok: Tokenizer | null, id: number): string {
  return tokenString(tok, id) ?? String(id);
}

function nodeLabel(r: TraceResult, i: number, tok: Tokenizer | null): string {
  const n = r.graph.nodes[i];
  switch (n.kind) {
    case "feature":
      return `L${n.layer}#${n.feature}@${n.position}`;
    case "error":
      return `err L${n.layer}@${n.position}`;
    case "token":
      return `${JSON.stringify(tokenText(tok, n.token))}@${n.position}`;
    case "logit":
      return `logit ${JSON.stringify(tokenText(tok, n.token))}`;
  }
}

function pathOut(r: TraceResult, p: GraphPath, tok: Tokenizer | null): GraphSummary["paths"][number] {
  const sign = p.weights.reduce((s, w) => (w < 0 ? -s : s), 1);
  return { nodes: p.nodes.map((i) => nodeLabel(r, i, tok)), strength: p.strength, sign };
}

/** A path as printed: signed strength, then the nodes. */
export function pathLine(p: GraphSummary["paths"][number]): string {
  return `${p.sign < 0 ? "-" : "+"}${p.strength.toExponential(2)}  ${p.nodes.join(" -> ")}`;
}

export interface GraphSummary {
  readonly out: string;
  readonly prompt_tokens: string[];
  readonly active_features: number;
  readonly visited_features: number;
  readonly nodes: number;
  readonly kept_nodes: number;
  readonly kept_edges: number;
  readonly logits: { token: number; text: string; probability: number }[];
  readonly scores: { replacement: number; completeness: number };
  /** Strength = product of normalised |weights|; sign = product of the weights' signs (-1: the path lowers the logit). */
  readonly paths: { nodes: string[]; strength: number; sign: number }[];
  /** The strongest paths that pass through at least one feature. */
  readonly feature_paths: { nodes: string[]; strength: number; sign: number }[];
  readonly seconds: TraceResult["seconds"];
}

export function runGraph(flags: GraphFlags, prompt: string | undefined): GraphSummary {
  const input = prepareInput(flags, prompt);
  const maxFeatureNodes = intFlag(flags.maxFeatureNodes, "--max-feature-nodes", 0);
  const nodeThreshold = numberFlag(flags.nodeThreshold, "--node-threshold", 1e-9, 1);
  const edgeThreshold = numberFlag(flags.edgeThreshold, "--edge-threshold", 1e-9, 1);
  const maxLogits = intFlag(flags.maxLogits, "--max-logits", 1);
  const logitProbability = numberFlag(flags.logitProbability, "--logit-probability", 1e-9, 1);
  const batchSize = intFlag(flags.batch, "--batch", 1);
  const paths = intFlag(flags.paths, "--paths", 0);
  const model = loadGemma3(input.dir, defaultBackend());
  const loaded = loadSet(flags, model);
  const tok = input.tokenizer;
  const bar =
    process.stderr.isTTY && !flags.json
      ? new SingleBar({
          format: "attribution [{bar}] {percentage}% | {value}/{total} feature rows",
          stream: process.stderr,
          hideCursor: true,
        })
      : null;
  let started = false;
  let r: TraceResult;
  try {
    r = traceGraph(model, loaded.set, input.ids, {
      maxFeatureNodes,
      nodeThreshold,
      edgeThreshold,
      maxLogits,
      logitProbability,
      batchSize,
      bosFeatures: flags.bosFeatures === true,
      paths,
      onProgress: (done, total) => {
        if (bar === null) return;
        if (!started) {
          bar.start(total, 0);
          started = true;
        }
        bar.update(done);
      },
    });
  } finally {
    if (started) bar?.stop();
  }
  let labeller: ((layer: number, feature: number) => string) | null = null;
  let db: FeatureDatabase | null = null;
  if (flags.stats !== undefined) {
    db = FeatureDatabase.open(flags.stats, { readonly: true });
    db.requireComplete();
    labeller = featureLabeller(db, loaded.set, loaded.paths);
  }
  try {
    const promptTokens = input.ids.map((id) => tokenText(tok, id));
    const np = neuronpediaGraph(r.graph, r.pruned, {
      slug: flags.slug ?? "glassbox-graph",
      scan: flags.scan ?? basename(resolve(input.dir)),
      prompt: input.text ?? promptTokens.join(""),
      promptTokens,
      tokenText: (id) => tokenText(tok, id),
      generation: { maxLogits, logitProbability, batchSize, maxFeatureNodes },
      transcoderList: loaded.paths,
      ...(labeller === null ? {} : { featureLabel: (n) => labeller(n.layer, n.feature) }),
    });
    const info: GlassboxGraphInfo = {
      format: GRAPH_FORMAT,
      format_version: GRAPH_FORMAT_VERSION,
      model: resolve(input.dir),
      kind: loaded.kind,
      dictionaries: loaded.paths.map((p) => resolve(p)),
      prompt_ids: input.ids,
      bos_features: flags.bosFeatures === true,
      scores: r.scores,
    };
    const file = { ...np, metadata: { ...np.metadata, glassbox: info } };
    if (flags.out.endsWith(".safetensors")) writeGraphBinary(flags.out, file);
    else writeGraphFile(flags.out, file);
  } finally {
    db?.close();
  }
  return {
    out: flags.out,
    prompt_tokens: input.ids.map((id) => tokenText(tok, id)),
    active_features: r.replacement.features.count,
    visited_features: r.attribution.visited.length,
    nodes: r.graph.nodes.length,
    kept_nodes: r.pruned.nodes.length,
    kept_edges: r.pruned.edges.source.length,
    logits: r.attribution.logits.map((l) => ({
      token: l.token,
      text: tokenText(tok, l.token),
      probability: l.probability,
    })),
    scores: r.scores,
    paths: r.paths.map((p) => pathOut(r, p, tok)),
    feature_paths: (r.graph.firstLogit < r.graph.nodes.length
      ? topPaths(r.graph, r.pruned, r.graph.firstLogit, 50 * Math.max(1, paths))
      : []
    )
      .filter((p) => p.nodes.some((i) => r.graph.nodes[i].kind === "feature"))
      .slice(0, paths)
      .map((p) => pathOut(r, p, tok)),
    seconds: r.seconds,
  };
}

function graphText(s: GraphSummary): string {
  const lines = [
    `graph      ${s.out}`,
    `prompt     ${s.prompt_tokens.map((t) => JSON.stringify(t)).join(" ")}`,
    `features   ${s.active_features} active, ${s.visited_features} attributed; ${s.nodes} nodes, ${s.kept_nodes} kept with ${s.kept_edges} edges`,
    `scores     replacement ${s.scores.replacement.toFixed(3)}, completeness ${s.scores.completeness.toFixed(3)}`,
    `logits     ${s.logits.map((l) => `${JSON.stringify(l.text)} ${l.probability.toFixed(3)}`).join("  ")}`,
    `time       ${s.seconds.replacement.toFixed(2)} s replacement, ${s.seconds.attribution.toFixed(2)} s attribution, ${s.seconds.pruning.toFixed(2)} s pruning`,
  ];
  if (s.paths.length > 0) {
    lines.push(`top paths to ${s.paths[0].nodes.at(-1)}:`);
    for (const p of s.paths) lines.push(`  ${pathLine(p)}`);
  }
  if (s.feature_paths.length > 0) {
    lines.push("top paths through features:");
    for (const p of s.feature_paths) lines.push(`  ${pathLine(p)}`);
  }
  return `${lines.join("\n")}\n`;
}

interface InterveneFlags {
  set?: string[];
  ablateError?: string[];
  mode: string;
  top: string;
  maxTokens?: string;
  json?: boolean;
}

/** `L:P:I=V` (set) or `L:P:I*S` (scale). */
export function parseSet(spec: string): GraphEdit {
  const m = /^(\d+):(\d+):(\d+)([=*])(-?\d+(?:\.\d+)?(?:e-?\d+)?)$/.exec(spec.trim());
  if (m === null)
    throw new UsageError(
      `${JSON.stringify(spec)} is not an edit: write LAYER:POSITION:FEATURE=VALUE or LAYER:POSITION:FEATURE*SCALE`,
      "--set",
    );
  const [layer, position, feature] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const v = Number(m[5]);
  return m[4] === "="
    ? { kind: "feature", layer, position, feature, value: v }
    : { kind: "feature", layer, position, feature, scale: v };
}

function parseError(spec: string): GraphEdit {
  const m = /^(\d+):(\d+)$/.exec(spec.trim());
  if (m === null)
    throw new UsageError(
      `${JSON.stringify(spec)} is not an error node: write LAYER:POSITION`,
      "--ablate-error",
    );
  return { kind: "error", layer: Number(m[1]), position: Number(m[2]) };
}

function topOf(logits: Float32Array, k: number): { token: number; probability: number }[] {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of logits) m = Math.max(m, v);
  let z = 0;
  for (const v of logits) z += Math.exp(v - m);
  return Array.from(logits.keys())
    .sort((a, b) => logits[b] - logits[a] || a - b)
    .slice(0, k)
    .map((token) => ({ token, probability: Math.exp(logits[token] - m) / z }));
}

export interface InterveneReport {
  readonly graph: string;
  readonly mode: "frozen" | "live";
  readonly edits: GraphEdit[];
  readonly before: { token: number; text: string; probability: number }[];
  readonly after: { token: number; text: string; probability: number }[];
  readonly generation?: { readonly before: string; readonly after: string };
}

/** The replacement model a graph file was built from (its `metadata.glassbox`). */
function rebuild(path: string): { g: GraphFile; rep: LocalReplacement; tok: Tokenizer | null } {
  const g = readGraphFile(path, true);
  const info = g.metadata.glassbox as GlassboxGraphInfo;
  const model = loadGemma3(info.model, defaultBackend());
  const dicts = info.dictionaries.map((d) => loadDictionary(d, model.backend));
  const set = TranscoderSet.from(dicts, model.config);
  const rep = LocalReplacement.build(model, set, info.prompt_ids, { bosFeatures: info.bos_features });
  const tok = existsSync(join(info.model, "tokenizer.json")) ? Tokenizer.fromDir(info.model) : null;
  return { g, rep, tok };
}

export function runIntervene(path: string, flags: InterveneFlags): InterveneReport {
  const mode = flags.mode;
  if (mode !== "frozen" && mode !== "live")
    throw new UsageError(`must be frozen or live, got ${JSON.stringify(mode)}`, "--mode");
  const edits = [...(flags.set ?? []).map(parseSet), ...(flags.ablateError ?? []).map(parseError)];
  if (edits.length === 0) throw new UsageError("no edits: give --set L:P:I=V or --ablate-error L:P");
  const top = intFlag(flags.top, "--top", 1);
  const { g, rep, tok } = rebuild(path);
  const info = g.metadata.glassbox as GlassboxGraphInfo;
  const model = rep.model;
  const show = (xs: { token: number; probability: number }[]) =>
    xs.map((x) => ({ ...x, text: tokenText(tok, x.token) }));
  let after: Float32Array;
  if (mode === "frozen") after = frozenLogits(rep, edits);
  else {
    const ivs = liveInterventions(rep, edits);
    after = model.forward([info.prompt_ids], { logits: "last", interventions: ivs }).logits.toFloat32Array();
  }
  const report: InterveneReport = {
    graph: path,
    mode,
    edits,
    before: show(topOf(rep.lastLogits, top)),
    after: show(topOf(after, top)),
  };
  if (flags.maxTokens !== undefined) {
    const n = intFlag(flags.maxTokens, "--max-tokens", 1);
    const base = generate(model, info.prompt_ids, { maxNewTokens: n });
    const edited = generate(model, info.prompt_ids, {
      maxNewTokens: n,
      interventions: liveInterventions(rep, edits),
    });
    const text = (ids: readonly number[]) => (tok === null ? ids.join(",") : tok.decode([...ids]));
    return { ...report, generation: { before: text(base.tokens[0]), after: text(edited.tokens[0]) } };
  }
  return report;
}

interface AttentionFlags {
  source: string;
  target: string;
  top: string;
  json?: boolean;
}

/** A graph node's writes (as a source) and read vector (as a target), from its file entry. */
function nodeOf(rep: LocalReplacement, g: GraphFile, id: string, flag: string) {
  const n = g.nodes.find((x) => x.node_id === id);
  if (n === undefined) throw new UsageError(`no node ${id} in the graph`, flag);
  const parts = id.split("_").map(Number);
  const D = rep.model.config.dModel;
  const T = rep.length;
  switch (n.feature_type) {
    case "cross layer transcoder": {
      const [layer, feature, position] = parts;
      const a = activationOf(rep, layer, position, feature);
      const rows = rep.transcoders.decoderRows(layer, feature);
      const writes: Write[] = rep.transcoders
        .targetLayers(layer)
        .map((t, k) => ({ layer: t, position, vector: rows[k].map((v) => v * a) }));
      const seed: Seed = {
        at: "mid",
        layer,
        position,
        vector: rep.transcoders.encoderColumn(layer, feature),
      };
      return { n, position, writes, seed };
    }
    case "mlp reconstruction error": {
      const [, layer, position] = parts;
      const writes: Write[] = [
        { layer, position, vector: rep.layers[layer].error.slice(position * D, (position + 1) * D) },
      ];
      return { n, position, writes, seed: null };
    }
    case "embedding": {
      const position = parts[2];
      const writes: Write[] = [
        { layer: -1, position, vector: rep.embedding.slice(position * D, (position + 1) * D) },
      ];
      return { n, position, writes, seed: null };
    }
    default: {
      const token = parts[1];
      const [v] = demeanedUnembedding(rep, [token]);
      const seed: Seed = { at: "final", layer: rep.layers.length - 1, position: T - 1, vector: v };
      return { n, position: T - 1, writes: [] as Write[], seed };
    }
  }
}

export interface AttentionReport {
  readonly source: string;
  readonly target: string;
  readonly edge: number;
  readonly stayed: number;
  readonly heads: { layer: number; head: number; part: number; share: number }[];
  /** For the head carrying most of the edge: the score from the target's position to the source's, split by the graph's nodes. */
  readonly qk: {
    layer: number;
    head: number;
    query: number;
    key: number;
    score: number;
    probability: number;
    key_side: { node: string; share: number }[];
    query_side: { node: string; share: number }[];
  } | null;
}

export function runAttention(path: string, flags: AttentionFlags): AttentionReport {
  const top = intFlag(flags.top, "--top", 1);
  const { g, rep } = rebuild(path);
  const src = nodeOf(rep, g, flags.source, "--source");
  const tgt = nodeOf(rep, g, flags.target, "--target");
  if (src.writes.length === 0)
    throw new UsageError(`${flags.source} is a logit: it has no outgoing edges`, "--source");
  if (tgt.seed === null)
    throw new UsageError(`${flags.target} is not a feature or a logit: it has no incoming edges`, "--target");
  const split = headSplit(rep, src.writes, tgt.seed);
  const heads = split.parts
    .flatMap((row, layer) =>
      Array.from(row, (part, head) => ({
        layer,
        head,
        part,
        share: split.total === 0 ? 0 : part / split.total,
      })),
    )
    .sort((a, b) => Math.abs(b.part) - Math.abs(a.part))
    .slice(0, top);
  let qk: AttentionReport["qk"] = null;
  const best = heads[0];
  if (best !== undefined && best.part !== 0 && src.position <= tgt.position) {
    const others = g.nodes.filter((n) => n.feature_type !== "logit");
    const sources = others.map((n) => nodeOf(rep, g, n.node_id, "--source").writes);
    const r = qkContributions(rep, best.layer, best.head, tgt.position, src.position, sources);
    const T = rep.length;
    const prob = rep.layers[best.layer].pattern.data[(best.head * T + tgt.position) * T + src.position];
    const rank = (side: "key" | "query") =>
      r.shares
        .map((s) => ({ node: others[s.source].node_id, share: s[side] }))
        .sort((a, b) => Math.abs(b.share) - Math.abs(a.share))
        .slice(0, top);
    qk = {
      layer: best.layer,
      head: best.head,
      query: tgt.position,
      key: src.position,
      score: r.score,
      probability: prob,
      key_side: rank("key"),
      query_side: rank("query"),
    };
  }
  return { source: flags.source, target: flags.target, edge: split.total, stayed: split.stayed, heads, qk };
}

function attentionText(r: AttentionReport): string {
  const lines = [
    `edge       ${r.source} -> ${r.target}: ${r.edge.toPrecision(4)} (${r.stayed.toPrecision(3)} never leaves the source position)`,
    "by the head where it first leaves the source position:",
    ...r.heads.map(
      (h) => `  layer ${h.layer} head ${h.head}  ${h.part.toPrecision(4)}  (${(100 * h.share).toFixed(1)} %)`,
    ),
  ];
  if (r.qk !== null) {
    const q = r.qk;
    lines.push(
      `attention of layer ${q.layer} head ${q.head}, query position ${q.query} -> key position ${q.key}: score ${q.score.toPrecision(4)}, probability ${q.probability.toFixed(3)}`,
      "  key side (what the source position offers):",
      ...q.key_side.map((s) => `    ${s.node.padEnd(16)} ${s.share.toPrecision(4)}`),
      "  query side (what the target position looks for):",
      ...q.query_side.map((s) => `    ${s.node.padEnd(16)} ${s.share.toPrecision(4)}`),
    );
  }
  return `${lines.join("\n")}\n`;
}

function interveneText(r: InterveneReport): string {
  const row = (xs: InterveneReport["before"]) =>
    xs.map((x) => `${JSON.stringify(x.text)} ${x.probability.toFixed(3)}`).join("  ");
  const lines = [
    `edits      ${r.edits.map((e) => (e.kind === "error" ? `ablate error L${e.layer}@${e.position}` : `L${e.layer}#${e.feature}@${e.position} ${e.value !== undefined ? `= ${e.value}` : `x ${e.scale}`}`)).join(", ")} (${r.mode})`,
    `before     ${row(r.before)}`,
    `after      ${row(r.after)}`,
  ];
  if (r.generation !== undefined) {
    lines.push(`generation (live, greedy)`);
    lines.push(`  before  ${JSON.stringify(r.generation.before)}`);
    lines.push(`  after   ${JSON.stringify(r.generation.after)}`);
  }
  return `${lines.join("\n")}\n`;
}

export function registerGraph(program: Command): void {
  const graph = addModelOptions(
    program
      .command("graph")
      .description("trace an attribution graph through transcoders or a CLT; write Neuronpedia graph JSON")
      .argument("[prompt]", "prompt text"),
    { modelRequired: false },
  )
    .option("--transcoders <dir>", "per-layer transcoder folders, or a folder of them (repeatable)", collect)
    .option("--clt <dir>", "a cross-layer transcoder folder")
    .option("--stats <file>", "feature statistics database (features build) for node labels")
    .option(
      "--out <file>",
      "graph file to write: JSON, or the compact binary form if it ends in .safetensors",
      "graph.json",
    )
    .option("--max-feature-nodes <n>", "most features whose inputs are attributed", "7500")
    .option("--node-threshold <x>", "cumulative influence of the nodes kept", "0.8")
    .option("--edge-threshold <y>", "cumulative influence of the edges kept", "0.98")
    .option("--max-logits <k>", "most logit targets", "10")
    .option("--logit-probability <p>", "logit targets until their probability sums to p", "0.95")
    .option("--batch <n>", "targets per backward pass", "256")
    .option("--bos-features", "keep features at position 0 as nodes")
    .option("--paths <k>", "strongest paths to the top logit to print", "5")
    .option("--slug <s>", "metadata.slug of the graph JSON")
    .option("--scan <id>", "metadata.scan: the model id (default: the model folder's name)")
    .action((prompt: string | undefined, flags: GraphFlags) => {
      if (flags.model === undefined) throw new UsageError("--model is required", "--model");
      const s = runGraph(flags, prompt);
      process.stdout.write(flags.json ? jsonLine(s) : graphText(s));
    });
  graph
    .command("intervene")
    .description("set, scale or ablate graph nodes and show the new top logits (and a generation)")
    .argument("<graph>", "graph JSON written by glassbox graph")
    .option(
      "--set <edit>",
      "L:P:I=V sets feature I of layer L at position P to V; L:P:I*S scales it (repeatable)",
      collect,
    )
    .option(
      "--ablate-error <node>",
      "L:P removes the error node of layer L at position P (repeatable)",
      collect,
    )
    .option(
      "--mode <m>",
      "frozen (attention, norms and other features fixed) or live (the real model)",
      "frozen",
    )
    .option("--top <k>", "top logits shown", "5")
    .option("--max-tokens <n>", "also generate n tokens greedily with the edits (live)")
    .option("--json", "print one JSON object")
    .action((path: string, flags: InterveneFlags) => {
      const r = runIntervene(path, flags);
      process.stdout.write(flags.json ? jsonLine(r) : interveneText(r));
    });
  graph
    .command("attention")
    .description("split an edge by the attention head that carries it, and the head's score by source nodes")
    .argument("<graph>", "graph file written by glassbox graph")
    .requiredOption("--source <id>", "source node_id (feature, error or embedding)")
    .requiredOption("--target <id>", "target node_id (feature or logit)")
    .option("--top <k>", "heads and score shares shown", "5")
    .option("--json", "print one JSON object")
    .action((path: string, flags: AttentionFlags) => {
      const r = runAttention(path, flags);
      process.stdout.write(flags.json ? jsonLine(r) : attentionText(r));
    });
}
