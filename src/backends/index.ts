/**
 * Backend selection. `defaultBackend()` decides on its first call (never at import): the native
 * backend when its addon loads, else the reference backend with one line on stderr saying why.
 * `GLASSBOX_BACKEND=reference|native` forces a choice; forcing an unavailable native backend is an
 * error. Core code never imports this module; callers pass a backend to the tensor factories.
 */
import type { Backend } from "../core/backend.js";
import { BackendError } from "../core/errors.js";
import { type NativeLoad, tryLoadNative } from "./native/index.js";
import { referenceBackend } from "./reference/index.js";

export { limitYoungGeneration, optimizeHeapForSize } from "./native/young-generation.js";
export { referenceBackend };

/** The outcome of a backend choice: the backend, and a warning to print when it fell back. */
export interface BackendChoice {
  readonly backend: Backend;
  readonly warning: string | null;
}

/** What a native loader reports: a backend, or why there is none. */
export type BackendLoad = { readonly backend: Backend } | { readonly error: string };

/** Pure decision from the GLASSBOX_BACKEND value and a native loader (exposed for tests). */
export function chooseBackend(requested: string | undefined, loadNative: () => BackendLoad): BackendChoice {
  const want = requested?.trim() ?? "";
  if (want === "reference") return { backend: referenceBackend, warning: null };
  if (want !== "" && want !== "native") {
    throw new BackendError(
      `unknown backend "${want}" (expected "reference" or "native")`,
      "GLASSBOX_BACKEND",
    );
  }
  const native = loadNative();
  if ("backend" in native) return { backend: native.backend, warning: null };
  if (want === "native") {
    throw new BackendError(`native backend requested but unavailable: ${native.error}`, "GLASSBOX_BACKEND");
  }
  return {
    backend: referenceBackend,
    warning: `glassbox: native backend unavailable (${native.error}); using the slower reference backend`,
  };
}

let nativeLoad: NativeLoad | null = null;
function loadNativeOnce(): NativeLoad {
  nativeLoad ??= tryLoadNative();
  return nativeLoad;
}

let chosen: Backend | null = null;

export function defaultBackend(): Backend {
  if (chosen === null) {
    const choice = chooseBackend(process.env.GLASSBOX_BACKEND, loadNativeOnce);
    if (choice.warning !== null) process.stderr.write(`${choice.warning}\n`);
    chosen = choice.backend;
  }
  return chosen;
}

/** Every backend that works here: the reference backend, then native when its addon loads. */
export function availableBackends(): Backend[] {
  const native = loadNativeOnce();
  return "backend" in native ? [referenceBackend, native.backend] : [referenceBackend];
}
