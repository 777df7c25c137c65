/**
 * Keeps V8's young generation at its initial size in a long-running inference process.
 *
 * V8 doubles its semi-spaces (up to 16 MiB each in Node 20) whenever enough objects survive its
 * scavenges. A decoding loop creates ~1.5 MB of small objects per token (tensors, shapes,
 * closures), part of them alive at each scavenge, and so drives the young generation to its
 * maximum: ~32 MiB resident, more than half of what a forward pass of the 270m model needs on top
 * of its weights. Tensor storage lives outside the JS heap, so a small young generation costs no
 * measurable time (docs/benchmarks.md). Starting node with `--max-semi-space-size=1` does the same;
 * this works after startup by stopping growth (V8 reads the growth factor at each decision).
 */
import { setFlagsFromString } from "node:v8";

/**
 * Stops the young generation from growing. V8 ignores (with a warning on stderr) a flag it does
 * not know; Node 20-24's V8 has this one.
 */
export function limitYoungGeneration(): void {
  setFlagsFromString("--semi-space-growth-factor=1");
}
