/**
 * Child process for the crash tests: harvests a synthetic dataset into a store (argv: DIR, JSON of
 * SyntheticHarvest), printing the resulting token count, or the error message with exit code 1.
 */
import { harvestToStore } from "../../src/activations/harvest.js";
import { type SyntheticHarvest, syntheticHarvest } from "./helpers.js";

// Under `ulimit -f`, writing past the limit raises SIGXFSZ; handled, the write fails with EFBIG instead.
process.on("SIGXFSZ", () => {});
const [dir, json] = process.argv.slice(2);
const o = JSON.parse(json) as SyntheticHarvest;
harvestToStore(dir, syntheticHarvest(o)).then(
  (r) => process.stdout.write(`${r.manifest.tokens}\n`),
  (e: unknown) => {
    process.stdout.write(`${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\n`);
    process.exitCode = 1;
  },
);
