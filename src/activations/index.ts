/** Activation stores, harvesting and streaming (docs/activations.md). */
export {
  type DatasetFile,
  fingerprintFile,
  formatFromName,
  type InputFormat,
  type RawDocument,
  readDocuments,
  type TokenDocument,
  tokenizeDocuments,
} from "./documents.js";
export {
  datasetDescription,
  gemma3Harvester,
  type HarvestModel,
  type HarvestOptions,
  type HarvestProgress,
  type HarvestResult,
  harvestToStore,
  ModelBatchSource,
  modelHash,
  modelIdentity,
  type SequenceSource,
  type StreamBatch,
  type StreamOptions,
  streamActivations,
} from "./harvest.js";
export {
  type HarvestCursor,
  type ModelIdentity,
  type ShardEntry,
  STORE_DTYPES,
  STORE_FORMAT,
  STORE_VERSION,
  type StoreDType,
  type StoreManifest,
  type StoreSite,
} from "./manifest.js";
export {
  type ActivationBatch as StoreBatch,
  DEFAULT_BUFFER_TOKENS,
  parseReaderCursor,
  type ReaderCursor,
  type ReaderOptions,
  type ReadOrder,
  readActivations,
  StoreReader,
  splitShards,
} from "./reader.js";
export {
  type LongDocuments,
  type MaskingRules,
  maskingRules,
  type Sequence,
  type SequenceOptions,
  sequenceStream,
  sequencesOf,
} from "./sequences.js";
export { cursorJson, type PulledBatch, StoreBatchSource } from "./source.js";
export { ActivationStore, type ShardData, type StoreIdentity, StoreWriter } from "./store.js";
