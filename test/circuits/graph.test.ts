/**
 * Pruning, scores, graph JSON and interventions:
 * - influence equals w (N + N^2 + ...) computed by solving (I - N^T) x = N^T w densely;
 * - pruning on a hand-made graph keeps exactly the nodes and edges the thresholds select, tokens and
 *   logits always, and drops orphans;
 * - replacement and completeness scores on hand-computed cases;
 * - the Neuronpedia graph JSON validates against the schema, with circuit-tracer's node ids, and a
 *   malformed file gets a clear error;
 * - a frozen intervention changes each demeaned target logit by exactly minus the removed edge, and
 *   setting a feature to its own value changes nothing, frozen or live.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { attribute, edge, influence, nodeIndex } from "../../src/circuits/attribute.js";
import type { Graph, GraphNode } from "../../src/circuits/graph.js";
import { toGraph } from "../../src/circuits/graph.js";
import { readGraphBinary, writeGraphBinary } from "../../src/circuits/graph-binary.js";
import { graphProblems, readGraphFile } from "../../src/circuits/graph-file.js";
import { frozenLogits, liveInterventions } from "../../src/circuits/intervene.js";
import { neuronpediaGraph, nodeId } from "../../src/circuits/neuronpedia-graph.js";
import { topPaths } from "../../src/circuits/paths.js";
import { graphScores, prune } from "../../src/circuits/prune.js";
import { LocalReplacement } from "../../src/circuits/replacement.js";
import { TranscoderSet } from "../../src/circuits/transcoders.js";
import { CircuitError } from "../../src/core/errors.js";
import { Rng } from "../../src/core/random.js";
import { loadDictionary } from "../../src/dictionaries/load.js";
import { Tokenizer } from "../../src/io/tokenizer.js";
import { loadGemma3 } from "../../src/model/gemma3/model.js";
import { backend, MODEL } from "../features/helpers.js";
import { runCli } from "../io/helpers.js";

/** A hand-made graph: nodes given in order, edges as [source, target, weight]. */
function handGraph(nodes: GraphNode[], edges: [number, number, number][]): Graph {
  const n = nodes.length;
  const adjacency = new Float32Array(n * n);
  for (const [s, t, w] of edges) adjacency[t * n + s] = w;
  const first = (k: GraphNode["kind"]) => {
    const i = nodes.findIndex((x) => x.kind === k);
    return i < 0 ? n : i;
  };
  return {
    ids: [2, 5, 6],
    layers: 2,
    nodes,
    adjacency,
    firstError: first("error"),
    firstToken: first("token"),
    firstLogit: first("logit"),
  };
}

/** Solves (I - M) x = b by Gaussian elimination (dense, float64). */
function solve(m: Float64Array, b: Float64Array, n: number): Float64Array {
  const a = new Float64Array(n * (n + 1));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) a[i * (n + 1) + j] = (i === j ? 1 : 0) - m[i * n + j];
    a[i * (n + 1) + n] = b[i];
  }
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r * (n + 1) + c]) > Math.abs(a[p * (n + 1) + c])) p = r;
    for (let j = 0; j <= n; j++)
      [a[c * (n + 1) + j], a[p * (n + 1) + j]] = [a[p * (n + 1) + j], a[c * (n + 1) + j]];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r * (n + 1) + c] / a[c * (n + 1) + c];
      for (let j = c; j <= n; j++) a[r * (n + 1) + j] -= f * a[c * (n + 1) + j];
    }
  }
  return Float64Array.from({ length: n }, (_, i) => a[i * (n + 1) + n] / a[i * (n + 1) + i]);
}

describe("influence and pruning", () => {
  test("influence = w (N + N^2 + ...) on a random acyclic graph", () => {
    const rng = new Rng(4);
    const n = 12;
    const rows = new Float32Array(n * n);
    // Acyclic: target t only reads sources s < t.
    for (let t = 1; t < n; t++)
      for (let s = 0; s < t; s++) if (rng.int(3) > 0) rows[t * n + s] = rng.normal();
    const w = new Float64Array(n);
    w[n - 1] = 0.7;
    w[n - 2] = 0.3;
    const got = influence(
      rows,
      Int32Array.from({ length: n }, (_, i) => i),
      n,
      w,
    );
    // x = N^T (w + x)  <=>  (I - N^T) x = N^T w, with N row-normalised |A|.
    const nt = new Float64Array(n * n);
    for (let t = 0; t < n; t++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += Math.abs(rows[t * n + j]);
      if (s > 0) for (let j = 0; j < n; j++) nt[j * n + t] = Math.abs(rows[t * n + j]) / s;
    }
    const ntw = new Float64Array(n);
    for (let j = 0; j < n; j++) for (let t = 0; t < n; t++) ntw[j] += nt[j * n + t] * w[t];
    const want = solve(nt, ntw, n);
    for (let i = 0; i < n; i++)
      assert.ok(Math.abs(got[i] - want[i]) < 1e-9, `node ${i}: ${got[i]} vs ${want[i]}`);
  });

  // tok0 tok1 -> f0 f1 f2 (layer 0) -> f3 (layer 1) -> logit; err at layer 1.
  const nodes: GraphNode[] = [
    { kind: "feature", layer: 0, position: 1, feature: 10, activation: 1 },
    { kind: "feature", layer: 0, position: 1, feature: 11, activation: 1 },
    { kind: "feature", layer: 0, position: 1, feature: 12, activation: 1 },
    { kind: "feature", layer: 1, position: 1, feature: 13, activation: 1 },
    { kind: "error", layer: 1, position: 1 },
    { kind: "token", position: 0, token: 2 },
    { kind: "token", position: 1, token: 5 },
    { kind: "logit", position: 1, token: 9, probability: 1 },
  ];
  const edges: [number, number, number][] = [
    [3, 7, 6], // f3 -> logit
    [4, 7, 2], // err -> logit
    [0, 3, 5], // f0 -> f3
    [1, 3, -3], // f1 -> f3
    [2, 3, 0.5], // f2 -> f3
    [5, 0, 1],
    [6, 1, 1],
    [6, 2, 1],
  ];
  const g = handGraph(nodes, edges);

  test("hand-made graph: influence, node and edge thresholds, orphans", () => {
    const p = prune(g, { nodeThreshold: 0.8, edgeThreshold: 0.9 });
    // Influence: f3 0.75, err 0.25; f0 0.75*5/8.5, f1 0.75*3/8.5, f2 0.75*0.5/8.5; tokens from those.
    const inf = p.influence;
    assert.ok(Math.abs(inf[3] - 0.75) < 1e-9 && Math.abs(inf[4] - 0.25) < 1e-9);
    assert.ok(Math.abs(inf[0] - (0.75 * 5) / 8.5) < 1e-9);
    // Node cut at 80 % of all nodes' influence (2.5, tokens included): f3 0.75, f0 0.441, tok0 0.441,
    // tok1 0.309 reach 1.94 < 2.0, so f1 (0.265) is kept too; err (0.25) and f2 (0.044) are dropped.
    assert.deepEqual(Array.from(p.nodes), [0, 1, 3, 5, 6, 7]);
    // Edges kept: f3->logit, f0->f3, f1->f3, tok0->f0, tok1->f1 (all there is between kept nodes).
    const kept = Array.from(p.edges.source, (s, e) => `${s}->${p.edges.target[e]}`).sort();
    assert.deepEqual(kept, ["0->3", "1->3", "3->7", "5->0", "6->1"]);
    assert.deepEqual(
      Array.from(p.edges.weight).sort((a, b) => a - b),
      [-3, 1, 1, 5, 6],
    );
    // A tighter edge threshold drops f1 -> f3 and then f1 and tok1's edge: f1 has no way out.
    const q = prune(g, { nodeThreshold: 0.8, edgeThreshold: 0.75 });
    assert.deepEqual(Array.from(q.nodes), [0, 3, 5, 6, 7], "tokens are kept even without edges");
    // Paths: tok0 -> f0 -> f3 -> logit is the only one; strength = 1 * (5/5) * (6/6) with f1 gone.
    const paths = topPaths(g, q, 7, 3);
    assert.deepEqual(paths[0].nodes, [5, 0, 3, 7]);
    assert.ok(Math.abs(paths[0].strength - 1) < 1e-9);
    const pp = topPaths(g, p, 7, 3);
    assert.deepEqual(
      pp.map((x) => x.nodes),
      [
        [5, 0, 3, 7],
        [6, 1, 3, 7],
      ],
    );
    assert.ok(Math.abs(pp[0].strength - 5 / 8) < 1e-6 && Math.abs(pp[1].strength - 3 / 8) < 1e-6);
  });

  test("scores: replacement and completeness on hand-computed cases", () => {
    const s = graphScores(g);
    // Influence reaching tokens: through f3 all of 0.75 (f0, f1, f2 all read tokens) -> 0.75; errors 0.25.
    assert.ok(Math.abs(s.replacement - 0.75) < 1e-9, `${s.replacement}`);
    // Completeness (as circuit-tracer): every node with influence or logit weight counts, weighted by
    // both; nodes without inputs (tokens, the error) count as fully explained. The logit gets 2/8
    // of its input from the error. Tokens' influence equals the layer-0 features' (sum 0.75).
    const infs = [(0.75 * 5) / 8.5, (0.75 * 3) / 8.5, (0.75 * 0.5) / 8.5];
    const sum = infs.reduce((x, y) => x + y, 0);
    const num = 0.75 * 1 + 0.75 + 0.25 + sum + sum;
    const den = 1 + 0.75 + 0.25 + sum + sum;
    assert.ok(Math.abs(s.completeness - num / den) < 1e-9, `${s.completeness} vs ${num / den}`);
    // No error inputs: both scores are 1.
    const clean = handGraph(
      nodes,
      edges.filter(([src]) => src !== 4),
    );
    assert.deepEqual(graphScores(clean), { replacement: 1, completeness: 1 });
  });

  test("thresholds out of range are refused", () => {
    assert.throws(() => prune(g, { nodeThreshold: 0 }), /nodeThreshold must be in \(0, 1\]/);
    assert.throws(() => prune(g, { edgeThreshold: 1.5 }), /edgeThreshold must be in \(0, 1\]/);
  });
});

describe("graph JSON, interventions and the CLI on tiny-gemma3", () => {
  const model = loadGemma3(MODEL, backend);
  const tok = Tokenizer.fromDir(MODEL);
  const GS = join(MODEL, "gemma-scope");
  const tcs = Array.from({ length: 6 }, (_, l) => join(GS, "transcoder", `layer_${l}_width_1k_l0_medium`));
  const set = TranscoderSet.from(
    tcs.map((p) => loadDictionary(p, backend)),
    model.config,
  );
  const PROMPT = "The old man walked slowly to the river and";
  const ids = tok.encode(PROMPT, { addBos: true });
  const rep = LocalReplacement.build(model, set, ids);
  const a = attribute(rep, { maxFeatureNodes: 64, batchSize: 32 });
  const dir = mkdtempSync(join(tmpdir(), "glassbox-graph-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("Neuronpedia JSON: schema, node ids, links between kept nodes", () => {
    const g = toGraph(a);
    const p = prune(g);
    const np = neuronpediaGraph(g, p, {
      slug: "t",
      scan: "tiny-gemma3",
      prompt: PROMPT,
      promptTokens: ids.map((i) => tok.decode([i])),
      tokenText: (i) => tok.decode([i]),
      generation: { maxLogits: 10, logitProbability: 0.95, batchSize: 32, maxFeatureNodes: 64 },
    });
    assert.deepEqual(graphProblems(JSON.parse(JSON.stringify(np))), []);
    // Kept nodes with a link, and every token and logit.
    assert.ok(np.nodes.length <= p.nodes.length);
    const linked = new Set(np.links.flatMap((l) => [l.source, l.target]));
    for (const x of np.nodes)
      assert.ok(linked.has(x.node_id) || x.feature_type === "embedding" || x.feature_type === "logit");
    assert.equal(np.links.length, p.edges.source.length);
    const byType = (t: string) => np.nodes.filter((n) => n.feature_type === t);
    assert.equal(byType("embedding").length, ids.length, "every token kept");
    assert.equal(byType("logit").length, a.nLogits, "every logit kept");
    assert.equal(np.nodes.filter((n) => n.is_target_logit).length, 1);
    for (const n of byType("cross layer transcoder")) {
      assert.match(n.node_id, /^\d+_\d+_\d+$/);
      // feature is circuit-tracer's Cantor pairing of (layer, index).
      const [l, f] = n.node_id.split("_").map(Number);
      assert.equal(n.feature, ((l + f) * (l + f + 1)) / 2 + f);
      assert.ok(n.influence !== null && n.influence > 0 && n.influence <= 1 + 1e-9, "cumulative share");
    }
    assert.equal(np.metadata.schema_version, 1);
    for (const n of byType("mlp reconstruction error")) assert.match(n.node_id, /^0_\d+_\d+$/);
    for (const n of byType("embedding")) assert.match(n.node_id, /^E_\d+_\d+$/);
    for (const n of byType("logit")) {
      assert.equal(n.layer, "7");
      assert.equal(n.node_id, `7_${n.feature}_${ids.length - 1}`);
    }
    assert.equal(nodeId({ kind: "feature", layer: 3, position: 4, feature: 17, activation: 1 }, 6), "3_17_4");
    // The binary form gives back the same graph (edge weights are float32 in both), and is smaller.
    const bin = join(dir, "g.safetensors");
    writeGraphBinary(bin, np);
    const back = readGraphBinary(bin);
    assert.deepEqual(back, JSON.parse(JSON.stringify(np)));
    assert.deepEqual(readGraphFile(bin), back, "readGraphFile reads both forms");
    const jsonBytes = Buffer.byteLength(JSON.stringify(np));
    assert.ok(readFileSync(bin).length < jsonBytes / 2, `${readFileSync(bin).length} vs ${jsonBytes} bytes`);
    // The schema check names what is wrong.
    const broken = JSON.parse(JSON.stringify(np));
    broken.links[0].target = "nope";
    broken.nodes[1].ctx_idx = "x";
    const problems = graphProblems(broken);
    assert.ok(problems.some((q) => /links\[0\]\.target: no node nope/.test(q)));
    assert.ok(problems.some((q) => /nodes\[1\]\.ctx_idx/.test(q)));
    const bad = join(dir, "bad.json");
    writeFileSync(bad, JSON.stringify(broken));
    assert.throws(
      () => readGraphFile(bad),
      (e: unknown) =>
        e instanceof CircuitError && e.message.startsWith(`${bad}: not a Neuronpedia graph file`),
    );
    writeFileSync(bad, "{");
    assert.throws(() => readGraphFile(bad), /not JSON/);
  });

  test("frozen intervention: each demeaned logit moves by minus the removed feature's edge", () => {
    const f = rep.features;
    for (const i of Array.from(a.visited).slice(0, 5)) {
      const before = rep.lastLogits;
      const after = frozenLogits(rep, [
        { kind: "feature", layer: f.layer[i], position: f.position[i], feature: f.feature[i], value: 0 },
      ]);
      let mean = 0;
      for (let v = 0; v < after.length; v++) mean += after[v] - before[v];
      mean /= after.length;
      for (let k = 0; k < a.nLogits; k++) {
        const t = a.logits[k].token;
        const got = after[t] - before[t] - mean;
        const want = -edge(a, i, nodeIndex.logit(a, k));
        assert.ok(
          Math.abs(got - want) < 1e-4 * (1 + Math.abs(want)),
          `feature node ${i}, logit ${k}: ${got} vs ${want}`,
        );
      }
    }
    // Setting a feature to its own value changes nothing, frozen or live.
    const i = a.visited[0];
    const same = {
      kind: "feature",
      layer: f.layer[i],
      position: f.position[i],
      feature: f.feature[i],
      scale: 1,
    } as const;
    assert.deepEqual(frozenLogits(rep, [same]), rep.lastLogits);
    const live = model.forward([ids], { logits: "last", interventions: liveInterventions(rep, [same]) });
    assert.deepEqual(live.logits.toFloat32Array(), rep.lastLogits);
  });

  test("glassbox graph writes a valid graph; graph intervene runs on it; bad input is named", () => {
    const out = join(dir, "g.json");
    const r = runCli([
      "graph",
      "--model",
      MODEL,
      ...tcs.flatMap((t) => ["--transcoders", t]),
      "--max-feature-nodes",
      "64",
      "--out",
      out,
      "--json",
      PROMPT,
    ]);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as {
      kept_nodes: number;
      scores: { replacement: number };
      paths: { nodes: string[] }[];
    };
    assert.ok(s.kept_nodes > ids.length);
    assert.ok(s.scores.replacement > 0 && s.scores.replacement <= 1);
    assert.ok(s.paths.length > 0 && s.paths[0].nodes.at(-1)?.startsWith("logit"));
    const g = readGraphFile(out, true);
    assert.deepEqual(g.metadata.glassbox?.prompt_ids, ids);
    assert.equal(JSON.parse(readFileSync(out, "utf8")).metadata.scan, "tiny-gemma3");
    const f = g.nodes.find((n) => n.feature_type === "cross layer transcoder");
    assert.ok(f !== undefined);
    // node_id is layer_index_position (feature is circuit-tracer's Cantor number).
    const [fl, fi, fp] = f.node_id.split("_");
    const iv = runCli(["graph", "intervene", out, "--set", `${fl}:${fp}:${fi}=0`, "--json"]);
    assert.equal(iv.status, 0, iv.stderr);
    const rep2 = JSON.parse(iv.stdout) as { before: { token: number }[]; after: { token: number }[] };
    assert.equal(rep2.before[0].token, a.logits[0].token);
    // graph attention: the edge split by head; the head's score split by the graph's nodes.
    const tokenId = g.nodes.find((n) => n.feature_type === "embedding" && n.ctx_idx === 4)?.node_id as string;
    const logitId = g.nodes.find((n) => n.is_target_logit)?.node_id as string;
    const at = runCli([
      "graph",
      "attention",
      out,
      "--source",
      tokenId,
      "--target",
      logitId,
      "--top",
      "3",
      "--json",
    ]);
    assert.equal(at.status, 0, at.stderr);
    const ar = JSON.parse(at.stdout) as {
      edge: number;
      heads: { part: number }[];
      qk: { score: number; key_side: { node: string; share: number }[] } | null;
    };
    const tok = ids.length - 1 >= 4 ? nodeIndex.token(a, 4) : 0;
    assert.ok(Math.abs(ar.edge - edge(a, tok, nodeIndex.logit(a, 0))) < 1e-4 * (1 + Math.abs(ar.edge)));
    assert.equal(ar.heads.length, 3);
    assert.ok(
      ar.qk !== null && ar.qk.key_side[0].node === tokenId,
      "at layer 0 only the token makes up the key",
    );
    const bad = runCli(["graph", "attention", out, "--source", "9_9_9", "--target", logitId]);
    assert.match(bad.stderr, /--source: no node 9_9_9 in the graph/);
    // Errors name the argument.
    const e1 = runCli(["graph", "--model", MODEL, "--transcoders", tcs[0], "--out", out, PROMPT]);
    assert.equal(e1.status, 1);
    assert.match(e1.stderr, /--transcoders: no transcoders for layers 1, 2, 3, 4, 5/);
    const e2 = runCli([
      "graph",
      "--model",
      MODEL,
      "--transcoders",
      join(GS, "transcoder"),
      "--out",
      out,
      PROMPT,
    ]);
    assert.match(e2.stderr, /--transcoders: 2 dictionaries read the same site/);
    const e3 = runCli(["graph", "intervene", out, "--set", "0:99:1=2"]);
    assert.match(e3.stderr, /--set: position 99 is out of range/);
    const e4 = runCli([
      "graph",
      "--model",
      MODEL,
      "--clt",
      join(GS, "clt", "width_3k_l0_medium"),
      "--max-feature-nodes",
      "-1",
      PROMPT,
    ]);
    assert.match(e4.stderr, /--max-feature-nodes/);
  });
});
