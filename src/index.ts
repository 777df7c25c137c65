/** glassbox: the public API. */

export * from "./backends/index.js";
export * from "./core/autograd.js";
export * from "./core/backend.js";
export * from "./core/dtype.js";
export * from "./core/errors.js";
export * from "./core/half.js";
export * from "./core/ops/index.js";
export * from "./core/random.js";
export * from "./core/tensor.js";
export {
  buildCorpus,
  type BuildOptions,
  type CorpusManifest,
  loadTokenCounter,
  type SourceManifest,
  type TextStats,
  type TokenCounter,
} from "./data/build.js";
export { fetchPackage } from "./data/fetch.js";
export type { CorpusDocument, CorpusSource, PackageRef } from "./data/source.js";
export { SOURCES as CORPUS_SOURCES } from "./data/sources/index.js";
