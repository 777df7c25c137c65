/**
 * Loader for the native backend (Node-API addon in `native/`, built by node-gyp at install).
 * Placeholder until the addon lands: reports that it is not built.
 */
import type { Backend } from "../../core/backend.js";

export type NativeLoad = { readonly backend: Backend } | { readonly error: string };

export function tryLoadNative(): NativeLoad {
  return { error: "native addon not built yet" };
}
