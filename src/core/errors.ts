/**
 * Error classes, one per domain. Each carries the file or argument it is about, so the CLI can
 * print one clear line (and exit 1) instead of a stack trace.
 */

export class GlassboxError extends Error {
  /** The file, directory or argument the error is about, when there is one. */
  readonly subject: string | undefined;

  constructor(message: string, subject?: string) {
    super(subject === undefined ? message : `${subject}: ${message}`);
    this.name = new.target.name;
    this.subject = subject;
  }
}

/** Shapes, dtypes or arguments that an op cannot accept. */
export class TensorError extends GlassboxError {}

/** A malformed or unreadable safetensors / npz file. */
export class SafetensorsError extends GlassboxError {}

/** Bad command-line usage or arguments. */
export class UsageError extends GlassboxError {}

/** A corpus source that cannot be downloaded, unpacked or parsed; the subject names the source or file. */
export class DataError extends GlassboxError {}

/** A backend that was asked for (e.g. by GLASSBOX_BACKEND) but cannot be used. */
export class BackendError extends GlassboxError {}

/** A model config.json that is missing fields, inconsistent, or not a supported architecture. */
export class ConfigError extends GlassboxError {}

/** Model weights that do not match their config (missing tensors, wrong shapes), or bad model inputs. */
export class ModelError extends GlassboxError {}

/** A missing or malformed tokenizer file, an id outside the vocabulary, or a chat template that fails. */
export class TokenizerError extends GlassboxError {}

/** An activation store that cannot be created, appended to or read; the subject names the store or file. */
export class StoreError extends GlassboxError {}

/** An evaluation that cannot run (bad inputs, a dictionary that does not fit the site); not named EvalError, which is a JavaScript global. */
export class EvaluationError extends GlassboxError {}

/** A training run that cannot start or continue (bad config, data that does not fit, a bad checkpoint). */
export class TrainingError extends GlassboxError {}

/**
 * A sparse dictionary (SAE, transcoder, CLT) that cannot be loaded, saved or applied: missing or
 * malformed files, wrong shapes or dtypes, a site that does not fit; the subject names the file.
 */
export class DictionaryError extends GlassboxError {}

/**
 * A feature statistics database that cannot be built, read or searched (corrupt or foreign file,
 * a run whose inputs changed, an unknown feature); the subject names the file or argument.
 */
export class FeaturesError extends GlassboxError {}

/**
 * An attribution graph that cannot be built, read or intervened on (a dictionary set that does not
 * form a replacement model, a malformed graph file, an unknown node); the subject names the file or
 * argument.
 */
export class CircuitError extends GlassboxError {}

/**
 * A chat-model analysis that cannot run (empty or malformed prompt sets, a model without a chat
 * template, a direction that does not fit the model); the subject names the file or argument.
 */
export class ChatError extends GlassboxError {}
