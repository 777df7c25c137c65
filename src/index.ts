/** glassbox: the public API. */
export * from "./core/backend.js";
export * from "./core/dtype.js";
export * from "./core/errors.js";
