// limitYoungGeneration: V8's young generation stays at its size while objects survive scavenges.
import assert from "node:assert/strict";
import { test } from "node:test";
import { getHeapSpaceStatistics } from "node:v8";
import { limitYoungGeneration } from "../../src/backends/index.js";

const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0;

test("limitYoungGeneration stops the young generation from growing", () => {
  const before = newSpace();
  limitYoungGeneration();
  // Many scavenges, each with part of what it finds still alive: without the limit this grows the
  // young generation to its maximum (32 MiB on Node 20).
  let alive: { i: number; xs: number[] }[] = [];
  for (let i = 0; i < 1_500_000; i++) {
    alive.push({ i, xs: [i] });
    if (alive.length > 50_000) alive = [];
  }
  assert.ok(alive.length > 0);
  assert.ok(newSpace() <= Math.max(before, 2 << 20), `young generation ${newSpace()} bytes, was ${before}`);
});
