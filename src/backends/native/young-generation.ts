/**
 * V8 heap settings for a long-running inference process: the young generation kept at its initial
 * size, and V8's "optimize for size" mode.
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

/**
 * Turns on V8's `--optimize-for-size` (its heap and compiler heuristics favour memory over speed),
 * which V8 reads as it decides, so it works after startup. Measured (docs/benchmarks.md, seventh run):
 * peak RSS 2-7 MiB lower for gemma-3-270m generation and 6-13 MiB for tiny-gemma3, decoding and
 * forward speed unchanged, SAE training steps 2-4 % slower; so the glassbox command sets it for
 * the commands that run a model (generate, logits, activations), not for training.
 */
export function optimizeHeapForSize(): void {
  setFlagsFromString("--optimize-for-size");
}
