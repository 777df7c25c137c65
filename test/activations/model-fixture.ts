/**
 * A small random Gemma 3 with a tokenizer, for harvesting and evaluation tests: the committed
 * text-mqa-f32-legacy fixture (7 layers, d_model 48) with its vocabulary widened to the 300 tokens
 * of the tiny test tokenizer (test/fixtures/tokenizer/tiny, which has a Gemma chat template).
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsFile } from "../../src/io/safetensors.js";
import { type TensorToWrite, writeSafetensorsSync } from "../../src/io/safetensors-write.js";
import { fixture } from "../io/helpers.js";

export const TEST_VOCAB = 300;

/** Writes the model to `dir`; `perturb` changes one weight (a different model, same shapes). */
export function writeTestModel(dir: string, perturb = false): string {
  mkdirSync(dir, { recursive: true });
  const src = fixture("gemma3", "text-mqa-f32-legacy");
  const config = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  const oldVocab: number = config.vocab_size;
  config.vocab_size = TEST_VOCAB;
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const f = SafetensorsFile.open(join(src, "model.safetensors"));
  const tensors = new Map<string, TensorToWrite>();
  for (const name of f.names()) {
    const t = f.readTypedSync(name);
    let data = t.data as Float32Array;
    let shape = [...t.shape];
    if (name === "model.embed_tokens.weight") {
      const d = shape[1];
      const wide = new Float32Array(TEST_VOCAB * d);
      wide.set(data);
      // New rows: earlier rows, permuted and negated, so every token has a distinct embedding.
      for (let r = oldVocab; r < TEST_VOCAB; r++)
        for (let j = 0; j < d; j++) wide[r * d + j] = -data[((r * 7) % oldVocab) * d + ((j + 1) % d)];
      data = wide;
      shape = [TEST_VOCAB, d];
    }
    if (perturb && name === "model.norm.weight") data = data.map((v) => v + 0.5);
    tensors.set(name, { dtype: "F32", shape, data });
  }
  f.close();
  writeSafetensorsSync(join(dir, "model.safetensors"), tensors);
  const tok = fixture("tokenizer", "tiny");
  for (const file of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
    copyFileSync(join(tok, file), join(dir, file));
  return dir;
}
