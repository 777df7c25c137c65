/**
 * Child process for the kill -9 test: builds a feature database (argv: OUT, DATA, JSON list of
 * dictionary folders, DELAY_MS, TOKENS). The delay (a synchronous sleep per batch) only slows the child
 * enough to be killed mid-way; the database content does not depend on it.
 */
import { buildSmall } from "./helpers.js";

const [out, data, dicts, delay, tokens] = process.argv.slice(2);
const ms = Number(delay);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
buildSmall(out, data, JSON.parse(dicts) as string[], {
  maxTokens: Number(tokens),
  onProgress: () => {
    if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
  },
}).then(
  (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
  (e: unknown) => {
    process.stdout.write(`${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\n`);
    process.exitCode = 1;
  },
);
