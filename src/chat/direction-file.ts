/**
 * A fitted direction on disk: `DIR/direction.safetensors` holds the direction (`direction`, f32
 * [d_model], not normalised) and what it is in the string metadata (format, version, kind, layer,
 * position, d_model, the model it was fitted on); `DIR/fit.json` holds the fit's full report.
 * Refusal directions and persona / behaviour vectors share the format, told apart by `kind`.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ChatError } from "../core/errors.js";
import { writeFileAtomicSync } from "../io/atomic-file.js";
import { SafetensorsFile } from "../io/safetensors.js";
import { writeSafetensorsSync } from "../io/safetensors-write.js";

export const DIRECTION_FORMAT = "glassbox-direction";
export const DIRECTION_FORMAT_VERSION = 1;

export interface DirectionInfo {
  readonly kind: "refusal" | "vector";
  /** The layer whose resid_pre it was measured at (and where addition applies). */
  readonly layer: number;
  /** Refusal: the post-instruction position (0 = first template token after the message); vectors: -1 (mean over response tokens). */
  readonly position: number;
  /** The model directory it was fitted on. */
  readonly model: string;
  /** A short name ("refusal", or the vector's name). */
  readonly name: string;
}

export interface SavedDirection extends DirectionInfo {
  readonly direction: Float32Array;
}

export function writeDirection(dir: string, d: SavedDirection, report: unknown): void {
  mkdirSync(dir, { recursive: true });
  writeSafetensorsSync(
    join(dir, "direction.safetensors"),
    { direction: { dtype: "F32", shape: [d.direction.length], data: d.direction } },
    {
      format: DIRECTION_FORMAT,
      version: String(DIRECTION_FORMAT_VERSION),
      kind: d.kind,
      layer: String(d.layer),
      position: String(d.position),
      d_model: String(d.direction.length),
      model: d.model,
      name: d.name,
    },
  );
  writeFileAtomicSync(join(dir, "fit.json"), `${JSON.stringify(report, null, 2)}\n`);
}

/** Reads `DIR/direction.safetensors` (or the file itself when given one). */
export function readDirection(path: string): SavedDirection {
  const file = path.endsWith(".safetensors") ? path : join(path, "direction.safetensors");
  const st = SafetensorsFile.open(file);
  try {
    const m = st.metadata;
    if (m.format !== DIRECTION_FORMAT)
      throw new ChatError(`not a glassbox direction file (format ${JSON.stringify(m.format ?? null)})`, file);
    if (m.version !== String(DIRECTION_FORMAT_VERSION))
      throw new ChatError(
        `direction format version ${m.version}; this glassbox reads ${DIRECTION_FORMAT_VERSION}`,
        file,
      );
    if (m.kind !== "refusal" && m.kind !== "vector")
      throw new ChatError(`unknown direction kind ${m.kind}`, file);
    const int = (k: string) => {
      const v = Number(m[k]);
      if (!Number.isInteger(v)) throw new ChatError(`metadata ${k} is not an integer: ${m[k]}`, file);
      return v;
    };
    if (!st.has("direction")) throw new ChatError("no tensor named direction", file);
    if (st.info("direction").dtype !== "F32")
      throw new ChatError(`direction is ${st.info("direction").dtype}; expected F32`, file);
    const t = st.readTypedSync("direction");
    const direction = Float32Array.from(t.data as ArrayLike<number>);
    if (t.shape.length !== 1 || direction.length !== int("d_model"))
      throw new ChatError(`direction has shape [${t.shape.join(", ")}], metadata d_model ${m.d_model}`, file);
    if (!direction.every(Number.isFinite)) throw new ChatError("the direction is not finite", file);
    return {
      kind: m.kind,
      layer: int("layer"),
      position: int("position"),
      model: m.model ?? "",
      name: m.name ?? m.kind,
      direction,
    };
  } finally {
    st.close();
  }
}
