/**
 * The compact binary form of a graph file, for graphs too large for JSON: one safetensors file
 * (written atomically) holding the Neuronpedia graph's numbers as columns and its strings in the
 * header. Node columns: `node_kind` u8 (0 feature, 1 error, 2 embedding, 3 logit), `node_layer`,
 * `node_index` (feature index, or token id for embeddings and logits), `node_position` (i32),
 * `node_activation`, `node_influence`, `node_token_prob` (f64; NaN for null), `node_target` u8;
 * links: `link_source`, `link_target` (i32 rows of the node columns), `link_weight` (f32).
 * `__metadata__` holds `format` ("glassbox-graph-binary"), `format_version`, `metadata` and
 * `qParams` (JSON) and `clerps` (a JSON array). `readGraphBinary` gives back the same
 * Neuronpedia graph that `neuronpediaGraph` built (node ids, jsNodeIds and labels re-derived).
 * Links take 12 bytes each instead of about 60 in JSON.
 */
import { CircuitError } from "../core/errors.js";
import { SafetensorsFile } from "../io/safetensors.js";
import { writeSafetensorsSync } from "../io/safetensors-write.js";
import type { GraphFile } from "./graph-file.js";
import { cantor, type NeuronpediaNode } from "./neuronpedia-graph.js";

export const GRAPH_BINARY_FORMAT = "glassbox-graph-binary";
export const GRAPH_BINARY_VERSION = 1;

const KINDS = ["cross layer transcoder", "mlp reconstruction error", "embedding", "logit"] as const;

/** (kind, layer, index, position) of a node, from its node_id. */
function parseId(n: NeuronpediaNode): [number, number, number, number] {
  const kind = KINDS.indexOf(n.feature_type);
  const parts = n.node_id.split("_");
  switch (n.feature_type) {
    case "cross layer transcoder":
      return [kind, Number(parts[0]), Number(parts[1]), Number(parts[2])];
    case "mlp reconstruction error":
      return [kind, Number(parts[1]), 0, Number(parts[2])];
    case "embedding":
      return [kind, -1, Number(parts[1]), Number(parts[2])];
    case "logit":
      return [kind, Number(parts[0]), Number(parts[1]), Number(parts[2])];
  }
}

const nan = (v: number | null) => (v === null ? Number.NaN : v);
const orNull = (v: number) => (Number.isNaN(v) ? null : v);

export function writeGraphBinary(path: string, g: GraphFile): void {
  const n = g.nodes.length;
  const kind = new Uint8Array(n);
  const layer = new Int32Array(n);
  const index = new Int32Array(n);
  const position = new Int32Array(n);
  const activation = new Float64Array(n);
  const influence = new Float64Array(n);
  const tokenProb = new Float64Array(n);
  const target = new Uint8Array(n);
  const row = new Map<string, number>();
  g.nodes.forEach((node, i) => {
    [kind[i], layer[i], index[i], position[i]] = parseId(node);
    activation[i] = nan(node.activation);
    influence[i] = nan(node.influence);
    tokenProb[i] = node.token_prob;
    target[i] = node.is_target_logit ? 1 : 0;
    row.set(node.node_id, i);
  });
  const m = g.links.length;
  const source = new Int32Array(m);
  const dest = new Int32Array(m);
  const weight = new Float32Array(m);
  g.links.forEach((l, e) => {
    source[e] = row.get(l.source) as number;
    dest[e] = row.get(l.target) as number;
    weight[e] = l.weight;
  });
  const col = (dtype: "U8" | "I32" | "F32" | "F64", data: ArrayBufferView, len: number) => ({
    dtype,
    shape: [len],
    data,
  });
  writeSafetensorsSync(
    path,
    {
      node_kind: col("U8", kind, n),
      node_layer: col("I32", layer, n),
      node_index: col("I32", index, n),
      node_position: col("I32", position, n),
      node_activation: col("F64", activation, n),
      node_influence: col("F64", influence, n),
      node_token_prob: col("F64", tokenProb, n),
      node_target: col("U8", target, n),
      link_source: col("I32", source, m),
      link_target: col("I32", dest, m),
      link_weight: col("F32", weight, m),
    },
    {
      format: GRAPH_BINARY_FORMAT,
      format_version: String(GRAPH_BINARY_VERSION),
      metadata: JSON.stringify(g.metadata),
      qParams: JSON.stringify(g.qParams),
      clerps: JSON.stringify(g.nodes.map((x) => x.clerp)),
    },
  );
}

export function readGraphBinary(path: string): GraphFile {
  const f = SafetensorsFile.open(path);
  try {
    const meta = f.metadata;
    if (meta.format !== GRAPH_BINARY_FORMAT)
      throw new CircuitError(`not a binary graph file (format ${JSON.stringify(meta.format)})`, path);
    if (meta.format_version !== String(GRAPH_BINARY_VERSION))
      throw new CircuitError(
        `format version ${meta.format_version}; this glassbox reads ${GRAPH_BINARY_VERSION}`,
        path,
      );
    const get = (name: string): number[] =>
      Array.from(f.readTypedSync(name).data as Iterable<number | bigint>, (v) => Number(v));
    const kind = get("node_kind");
    const layer = get("node_layer");
    const index = get("node_index");
    const position = get("node_position");
    const activation = get("node_activation");
    const influence = get("node_influence");
    const tokenProb = get("node_token_prob");
    const target = get("node_target");
    const clerps = JSON.parse(meta.clerps) as string[];
    const metadata = JSON.parse(meta.metadata) as GraphFile["metadata"];
    const nodes: NeuronpediaNode[] = Array.from(kind, (k, i): NeuronpediaNode => {
      const l = Number(layer[i]);
      const x = Number(index[i]);
      const p = Number(position[i]);
      const base = {
        ctx_idx: p,
        clerp: clerps[i],
        influence: orNull(Number(influence[i])),
        activation: orNull(Number(activation[i])),
        token_prob: Number(tokenProb[i]),
        is_target_logit: target[i] === 1,
        run_idx: 0,
        reverse_ctx_idx: 0,
      };
      switch (k) {
        case 0:
          return {
            ...base,
            node_id: `${l}_${x}_${p}`,
            feature: cantor(l, x),
            layer: String(l),
            feature_type: KINDS[0],
            jsNodeId: `${l}_${x}-0`,
          };
        case 1:
          return {
            ...base,
            node_id: `0_${l}_${p}`,
            feature: -1,
            layer: String(l),
            feature_type: KINDS[1],
            jsNodeId: `${l}_${p}-0`,
          };
        case 2:
          return {
            ...base,
            node_id: `E_${x}_${p}`,
            feature: 0,
            layer: "E",
            feature_type: KINDS[2],
            jsNodeId: `E_${x}-${p}`,
          };
        default:
          return {
            ...base,
            node_id: `${l}_${x}_${p}`,
            feature: x,
            layer: String(l),
            feature_type: KINDS[3],
            jsNodeId: `L_${x}-${p}`,
          };
      }
    });
    const src = get("link_source");
    const dst = get("link_target");
    const w = get("link_weight");
    const links = Array.from(src, (s, e) => ({
      source: nodes[Number(s)].node_id,
      target: nodes[Number(dst[e])].node_id,
      weight: Number(w[e]),
    }));
    return { metadata, qParams: JSON.parse(meta.qParams) as GraphFile["qParams"], nodes, links };
  } finally {
    f.close();
  }
}
