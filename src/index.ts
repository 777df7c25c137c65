/** glassbox: the public API. */

export * from "./activations/index.js";
export * from "./backends/index.js";
export * from "./chat/index.js";
export * from "./circuits/index.js";
export * from "./core/autograd.js";
export * from "./core/backend.js";
export * from "./core/dtype.js";
export * from "./core/errors.js";
export * from "./core/half.js";
export * from "./core/ops/index.js";
export * from "./core/random.js";
export * from "./core/tensor.js";
export {
  type BuildOptions,
  buildCorpus,
  type CorpusManifest,
  loadTokenCounter,
  type SourceManifest,
  type TextStats,
  type TokenCounter,
} from "./data/build.js";
export { fetchPackage } from "./data/fetch.js";
export type { CorpusDocument, CorpusSource, PackageRef } from "./data/source.js";
export { SOURCES as CORPUS_SOURCES } from "./data/sources/index.js";
export * from "./dictionaries/index.js";
export * from "./eval/index.js";
export * from "./features/index.js";
export {
  type ChatEncoding,
  type ChatMessage,
  type ChatRole,
  ChatTemplate,
  type ContentSpan,
  contentMask,
  type RenderOptions,
} from "./io/chat.js";
export { NpzFile, readNpz } from "./io/npz.js";
export { SafetensorsFile, type TensorCollection, type TensorInfo } from "./io/safetensors.js";
export {
  type RawTensor,
  SAFETENSORS_DTYPE_BYTES,
  SAFETENSORS_DTYPES,
  type SafetensorsArray,
  type SafetensorsArrayMap,
  type SafetensorsDType,
  type TypedTensor,
  typedArrayOf,
} from "./io/safetensors-dtype.js";
export {
  MAX_HEADER_BYTES as SAFETENSORS_MAX_HEADER_BYTES,
  type TensorEntry,
} from "./io/safetensors-header.js";
export { openSafetensors, ShardedSafetensors } from "./io/safetensors-sharded.js";
export {
  type NamedTensors,
  SafetensorsWriter,
  type TensorSpec,
  type TensorToWrite,
  writeSafetensors,
  writeSafetensorsSync,
} from "./io/safetensors-write.js";
export { rawToTensor, tensorToWrite } from "./io/to-tensor.js";
export {
  type BatchEncodeOptions,
  type DecodeOptions as TokenizerDecodeOptions,
  type EncodedBatch,
  type EncodedText,
  type EncodeOptions as TokenizerEncodeOptions,
  type PaddingSide,
  type SpecialTokenIds,
  Tokenizer,
  type TokenizerConfig,
  type TokenSpan,
} from "./io/tokenizer.js";
export * from "./model/gemma3/index.js";
export * from "./training/index.js";
