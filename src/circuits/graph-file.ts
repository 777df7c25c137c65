/**
 * Graph files: Neuronpedia graph JSON (neuronpedia-graph.ts) with one extra metadata field,
 * `metadata.glassbox`, that says how to rebuild the replacement model (model folder, dictionary
 * folders, prompt ids) so that `glassbox graph intervene` can run edits on it; Neuronpedia's and
 * circuit-tracer's frontends ignore it. Written atomically; read back with a schema check that
 * names the first field that is wrong.
 */
import { readFileSync } from "node:fs";
import { CircuitError } from "../core/errors.js";
import { writeFileAtomicSync } from "../io/atomic-file.js";
import { readGraphBinary } from "./graph-binary.js";
import type { NeuronpediaGraph } from "./neuronpedia-graph.js";

export const GRAPH_FORMAT = "glassbox-graph";
export const GRAPH_FORMAT_VERSION = 1;

export interface GlassboxGraphInfo {
  readonly format: typeof GRAPH_FORMAT;
  readonly format_version: number;
  readonly model: string;
  readonly kind: "transcoders" | "clt";
  readonly dictionaries: readonly string[];
  readonly prompt_ids: readonly number[];
  readonly bos_features: boolean;
  readonly scores: { readonly replacement: number; readonly completeness: number };
}

export type GraphFile = NeuronpediaGraph & {
  readonly metadata: NeuronpediaGraph["metadata"] & { readonly glassbox?: GlassboxGraphInfo };
};

export function writeGraphFile(path: string, g: GraphFile): void {
  writeFileAtomicSync(path, `${JSON.stringify(g)}\n`);
}

type Check = (v: unknown) => boolean;
const isString: Check = (v) => typeof v === "string";
const isNumber: Check = (v) => typeof v === "number" && Number.isFinite(v);
const isInt: Check = (v) => Number.isInteger(v);
const isBool: Check = (v) => typeof v === "boolean";
const orNull =
  (c: Check): Check =>
  (v) =>
    v === null || c(v);
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const NODE_FIELDS: Readonly<Record<string, Check>> = {
  node_id: isString,
  feature: orNull(isInt),
  layer: isString,
  ctx_idx: isInt,
  feature_type: (v) =>
    v === "cross layer transcoder" || v === "mlp reconstruction error" || v === "embedding" || v === "logit",
  jsNodeId: isString,
  clerp: isString,
  influence: orNull(isNumber),
  activation: orNull(isNumber),
  token_prob: isNumber,
  is_target_logit: isBool,
};

/**
 * Problems of a parsed graph file against the schema (empty when valid): required fields and types
 * of metadata, nodes and links, unique node ids, links between existing nodes.
 */
export function graphProblems(v: unknown): string[] {
  const out: string[] = [];
  if (!isObject(v)) return ["not a JSON object"];
  const m = v.metadata;
  if (!isObject(m)) out.push("metadata: missing or not an object");
  else {
    for (const k of ["slug", "scan", "prompt"])
      if (!isString(m[k])) out.push(`metadata.${k}: expected a string`);
    if (!Array.isArray(m.prompt_tokens) || !m.prompt_tokens.every(isString))
      out.push("metadata.prompt_tokens: expected an array of strings");
    if (!isNumber(m.node_threshold)) out.push("metadata.node_threshold: expected a number");
  }
  if (!isObject(v.qParams)) out.push("qParams: missing or not an object");
  if (!Array.isArray(v.nodes)) out.push("nodes: expected an array");
  if (!Array.isArray(v.links)) out.push("links: expected an array");
  if (out.length > 0) return out;
  const ids = new Set<string>();
  (v.nodes as unknown[]).forEach((n, i) => {
    if (!isObject(n)) {
      out.push(`nodes[${i}]: not an object`);
      return;
    }
    for (const [k, check] of Object.entries(NODE_FIELDS))
      if (!check(n[k])) out.push(`nodes[${i}].${k}: ${JSON.stringify(n[k])} is not valid`);
    if (isString(n.node_id)) {
      if (ids.has(n.node_id as string)) out.push(`nodes[${i}].node_id: ${n.node_id} is not unique`);
      ids.add(n.node_id as string);
    }
  });
  (v.links as unknown[]).forEach((l, i) => {
    if (!isObject(l) || !isString(l.source) || !isString(l.target) || !isNumber(l.weight)) {
      out.push(`links[${i}]: expected {source, target, weight}`);
      return;
    }
    if (!ids.has(l.source as string)) out.push(`links[${i}].source: no node ${l.source}`);
    if (!ids.has(l.target as string)) out.push(`links[${i}].target: no node ${l.target}`);
  });
  return out;
}

/**
 * Reads and checks a graph file, JSON or the binary form (graph-binary.ts, told apart by its first
 * byte); `needGlassbox` also requires the rebuild metadata.
 */
export function readGraphFile(path: string, needGlassbox = false): GraphFile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new CircuitError(`cannot read it (${e instanceof Error ? e.message : String(e)})`, path);
  }
  let v: unknown;
  const first = bytes.subarray(0, 64).toString("utf8").trimStart();
  if (first.startsWith("{")) {
    try {
      v = JSON.parse(bytes.toString("utf8"));
    } catch {
      throw new CircuitError("not JSON", path);
    }
  } else {
    try {
      v = readGraphBinary(path);
    } catch (e) {
      if (e instanceof CircuitError) throw e;
      throw new CircuitError(
        `neither graph JSON nor a binary graph file (${e instanceof Error ? e.message : String(e)})`,
        path,
      );
    }
  }
  const problems = graphProblems(v);
  if (problems.length > 0)
    throw new CircuitError(
      `not a Neuronpedia graph file: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? ` (and ${problems.length - 3} more)` : ""}`,
      path,
    );
  const g = v as GraphFile;
  if (needGlassbox) {
    const info = g.metadata.glassbox;
    if (info === undefined || info.format !== GRAPH_FORMAT)
      throw new CircuitError(
        "has no metadata.glassbox (it was not written by glassbox graph): cannot rebuild its replacement model",
        path,
      );
    if (info.format_version !== GRAPH_FORMAT_VERSION)
      throw new CircuitError(
        `format version ${info.format_version}; this glassbox reads ${GRAPH_FORMAT_VERSION}`,
        path,
      );
  }
  return g;
}
