/**
 * Streaming feature statistics for one feature space (a dictionary's features, or one source layer
 * of a cross-layer transcoder), in memory that does not grow with the corpus: per feature the
 * firing count, activation sum and max, a log-spaced histogram, the top-k activating contexts and
 * uniform samples of its firings per activation interval. What SAEDashboard / sae_vis compute from
 * all activations held at once (shared/reference/algorithms.md, "Features and steering"), here in
 * one pass:
 *
 * - Top contexts: one candidate per (feature, sequence), the sequence's max (first position on
 *   ties), kept in a k-slot heap ordered by activation, then lower sequence index.
 * - Intervals: SAEDashboard splits [0, max] into 10 equal intervals and samples examples uniformly
 *   within each. The max is only known at the end, so each feature keeps its firings' counts on a
 *   fine grid of `fineBins` equal bins over (0, S], S the smallest power of two >= its max so far
 *   (bins merge in pairs when S doubles), and per fine bin the `groupExamples` firings of lowest
 *   priority, a hash of (feature, sequence, position): a bottom-k sample, i.e. uniform without
 *   replacement. The bottom-k of a union of bins is the bottom-k of their bottom-k's, so each final
 *   interval, a run of fine bins, gets an exact uniform sample. Interval edges are the grid points
 *   nearest to max * g / 10 (within S / (2 * fineBins) <= max / fineBins of SAEDashboard's).
 * - Histogram: fixed log-spaced bins (10 per decade over (1e-4, 1e6], plus one bin below and one
 *   above), so histograms of two runs add.
 *
 * Everything is deterministic (no RNG: priorities are hashes), and the whole state is a handful of
 * typed arrays (`save` / `restore`), so a checkpointed build resumes to the same bytes.
 * Window activations of interval samples are kept as bf16 (display only); top contexts keep f32.
 */
import { DataError } from "../core/errors.js";

export interface StatsOptions {
  /** Top activating contexts kept per feature (default 20). */
  readonly topK: number;
  /** Activation intervals from 0 to the max (default 10). */
  readonly groups: number;
  /** Examples sampled per interval (default 5). */
  readonly groupExamples: number;
  /** Fine bins per power-of-two scale; even, >= 2 * groups (default 32). */
  readonly fineBins: number;
  /** Tokens shown before and after an example's token (default 10 and 5). */
  readonly before: number;
  readonly after: number;
}

export const DEFAULT_STATS_OPTIONS: StatsOptions = {
  topK: 20,
  groups: 10,
  groupExamples: 5,
  fineBins: 32,
  before: 10,
  after: 5,
};

/** Log-histogram layout: bin 0 holds (0, 1e-4], bins 1..100 the decades' tenths up to 1e6, bin 101 the rest. */
export const HIST_MIN_EXP = -4;
export const HIST_MAX_EXP = 6;
export const HIST_PER_DECADE = 10;
export const HIST_BINS = (HIST_MAX_EXP - HIST_MIN_EXP) * HIST_PER_DECADE + 2;

/** Histogram bin of an activation v > 0: edges 10^(HIST_MIN_EXP + (i - 1) / 10) < v <= 10^(HIST_MIN_EXP + i / 10). */
export function histogramBin(v: number): number {
  const t = Math.ceil((Math.log10(v) - HIST_MIN_EXP) * HIST_PER_DECADE);
  if (t <= 0) return 0;
  if (t >= HIST_BINS - 1) return HIST_BINS - 1;
  return t;
}

/** Upper edge of histogram bin i (Infinity for the last). */
export function histogramUpperEdge(i: number): number {
  if (i >= HIST_BINS - 1) return Number.POSITIVE_INFINITY;
  return 10 ** (HIST_MIN_EXP + i / HIST_PER_DECADE);
}

/** Lower edge of histogram bin i (0 for the first). */
export function histogramLowerEdge(i: number): number {
  return i === 0 ? 0 : 10 ** (HIST_MIN_EXP + (i - 1) / HIST_PER_DECADE);
}

/** Sample priority of a firing: a 32-bit mix of (space salt, feature, sequence, position). */
export function priority(salt: number, feature: number, sequence: number, position: number): number {
  let h = Math.imul(salt ^ 0x9e3779b9, 0x85ebca6b) ^ feature;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) ^ sequence;
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39) ^ Math.imul(position, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** f32 -> bf16 bits, round to nearest even (activations are finite and >= 0). */
export function toBf16(v: number): number {
  f32buf[0] = v;
  const b = u32buf[0];
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBf16(bits: number): number {
  u32buf[0] = bits << 16;
  return f32buf[0];
}

/** One sequence's feature activations as CSR rows (ascending feature index within a row). */
export interface SequenceActs {
  readonly offsets: Int32Array;
  readonly indices: Int32Array;
  readonly values: Float32Array;
  /** Row of the sequence's first token. */
  readonly row0: number;
  /** Tokens in the sequence. */
  readonly length: number;
}

/** A context example as the accumulator holds it (token ids come from the corpus sequences). */
export interface RawExample {
  readonly sequence: number;
  readonly position: number;
  readonly activation: number;
  /** Window start position and its activations [end - start]. */
  readonly start: number;
  readonly acts: Float32Array;
}

export interface RawGroup {
  readonly lo: number;
  readonly hi: number;
  readonly count: number;
  readonly examples: readonly RawExample[];
}

export interface RawFeatureStats {
  readonly firings: number;
  readonly sum: number;
  readonly max: number;
  /** [HIST_BINS] */
  readonly histogram: Uint32Array;
  /** Highest first. */
  readonly top: readonly RawExample[];
  readonly groups: readonly RawGroup[];
}

/** The typed arrays a space's state consists of (what a checkpoint stores). */
export type StatsState = Record<string, Uint8Array>;

const NO_SLOT = -1;

export class FeatureStats {
  readonly width: number;
  readonly options: StatsOptions;
  /** Tokens counted so far (the same for every feature). */
  tokens = 0;
  private readonly salt: number;
  private readonly window: number;
  private firings: Float64Array;
  private sums: Float64Array;
  private maxes: Float32Array;
  private hist: Uint32Array;
  // top-k heaps (min-heap of the kept contexts by "worse first")
  private topFill: Int32Array;
  private topValue: Float32Array;
  private topSeq: Int32Array;
  private topPos: Int32Array;
  private topStart: Int32Array;
  private topLen: Int32Array;
  private topActs: Float32Array;
  // interval samples, allocated per feature on its first firing
  private scaleExp: Int32Array;
  private slot: Int32Array;
  private slots = 0;
  private fineCount: Uint32Array;
  private sampleFill: Uint8Array;
  private samplePrio: Uint32Array;
  private sampleValue: Float32Array;
  private sampleSeq: Int32Array;
  private samplePos: Int32Array;
  private sampleStart: Int32Array;
  private sampleLen: Int32Array;
  private sampleActs: Uint16Array;
  // per-sequence scratch
  private readonly seqMax: Float32Array;
  private readonly seqPos: Int32Array;
  private readonly touched: Int32Array;

  constructor(width: number, options: StatsOptions = DEFAULT_STATS_OPTIONS, salt = 0) {
    if (!Number.isSafeInteger(width) || width <= 0) throw new DataError(`feature stats: bad width ${width}`);
    const o = options;
    for (const [name, v, min] of [
      ["topK", o.topK, 1],
      ["groups", o.groups, 1],
      ["groupExamples", o.groupExamples, 1],
      ["fineBins", o.fineBins, 2 * o.groups],
      ["before", o.before, 0],
      ["after", o.after, 0],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < min)
        throw new DataError(`feature stats: ${name} must be an integer >= ${min}, got ${v}`);
    }
    if (o.fineBins % 2 !== 0) throw new DataError(`feature stats: fineBins must be even, got ${o.fineBins}`);
    if (o.groupExamples > 255) throw new DataError("feature stats: groupExamples must be <= 255");
    this.width = width;
    this.options = { ...o };
    this.salt = salt;
    this.window = o.before + 1 + o.after;
    const k = o.topK;
    this.firings = new Float64Array(width);
    this.sums = new Float64Array(width);
    this.maxes = new Float32Array(width);
    this.hist = new Uint32Array(width * HIST_BINS);
    this.topFill = new Int32Array(width);
    this.topValue = new Float32Array(width * k);
    this.topSeq = new Int32Array(width * k);
    this.topPos = new Int32Array(width * k);
    this.topStart = new Int32Array(width * k);
    this.topLen = new Int32Array(width * k);
    this.topActs = new Float32Array(width * k * this.window);
    this.scaleExp = new Int32Array(width);
    this.slot = new Int32Array(width).fill(NO_SLOT);
    this.fineCount = new Uint32Array(0);
    this.sampleFill = new Uint8Array(0);
    this.samplePrio = new Uint32Array(0);
    this.sampleValue = new Float32Array(0);
    this.sampleSeq = new Int32Array(0);
    this.samplePos = new Int32Array(0);
    this.sampleStart = new Int32Array(0);
    this.sampleLen = new Int32Array(0);
    this.sampleActs = new Uint16Array(0);
    this.seqMax = new Float32Array(width);
    this.seqPos = new Int32Array(width);
    this.touched = new Int32Array(width);
  }

  /**
   * Adds one sequence: `keep[p]` is 1 for tokens the statistics count (0 for BOS, padding,
   * chat-template tokens), `acts` its rows. Activations <= 0 are not firings.
   */
  observe(sequence: number, keep: Uint8Array, acts: SequenceActs): void {
    const { offsets, indices, values, row0, length } = acts;
    const B = this.options.fineBins;
    const q = this.options.groupExamples;
    let nTouched = 0;
    for (let p = 0; p < length; p++) {
      if (keep[p] === 0) continue;
      this.tokens++;
      const r = row0 + p;
      for (let j = offsets[r]; j < offsets[r + 1]; j++) {
        const v = values[j];
        if (!(v > 0)) continue;
        const f = indices[j];
        this.firings[f] += 1;
        this.sums[f] += v;
        if (v > this.maxes[f]) this.maxes[f] = v;
        this.hist[f * HIST_BINS + histogramBin(v)]++;
        // interval grid
        let s = this.slot[f];
        if (s === NO_SLOT) {
          s = this.newSlot();
          this.slot[f] = s;
          this.scaleExp[f] = Math.ceil(Math.log2(v));
        }
        if (v > 2 ** this.scaleExp[f]) this.rescale(f, s, Math.ceil(Math.log2(v)));
        const scale = 2 ** this.scaleExp[f];
        let b = Math.ceil((v * B) / scale) - 1;
        if (b < 0) b = 0;
        else if (b >= B) b = B - 1;
        const cell = s * B + b;
        this.fineCount[cell]++;
        const pr = priority(this.salt, f, sequence, p);
        const fill = this.sampleFill[cell];
        const base = cell * q;
        if (fill < q) {
          this.putSample(base + fill, pr, v, sequence, p, f, keep, acts);
          this.sampleFill[cell] = fill + 1;
        } else {
          let worst = base;
          for (let i = base + 1; i < base + q; i++) if (this.sampleWorse(i, worst)) worst = i;
          if (this.beats(pr, sequence, p, worst)) this.putSample(worst, pr, v, sequence, p, f, keep, acts);
        }
        // sequence max
        if (this.seqMax[f] === 0) {
          this.touched[nTouched++] = f;
          this.seqMax[f] = v;
          this.seqPos[f] = p;
        } else if (v > this.seqMax[f]) {
          this.seqMax[f] = v;
          this.seqPos[f] = p;
        }
      }
    }
    for (let t = 0; t < nTouched; t++) {
      const f = this.touched[t];
      this.offerTop(f, this.seqMax[f], sequence, this.seqPos[f], keep, acts);
      this.seqMax[f] = 0;
      this.seqPos[f] = 0;
    }
  }

  /** Final statistics of feature f (top contexts sorted, intervals with their samples). */
  feature(f: number): RawFeatureStats {
    const k = this.options.topK;
    const W = this.window;
    const n = this.topFill[f];
    const top: RawExample[] = [];
    for (let i = 0; i < n; i++) {
      const at = f * k + i;
      const len = this.topLen[at];
      top.push({
        sequence: this.topSeq[at],
        position: this.topPos[at],
        activation: this.topValue[at],
        start: this.topStart[at],
        acts: this.topActs.slice(at * W, at * W + len),
      });
    }
    top.sort((a, b) => b.activation - a.activation || a.sequence - b.sequence);
    return {
      firings: this.firings[f],
      sum: this.sums[f],
      max: this.maxes[f],
      histogram: this.hist.slice(f * HIST_BINS, (f + 1) * HIST_BINS),
      top,
      groups: this.groupsOf(f),
    };
  }

  /** The whole state as named byte arrays (copies). */
  save(): StatsState {
    const bytes = (a: ArrayBufferView): Uint8Array =>
      new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
    const n = this.slots;
    const B = this.options.fineBins;
    const q = this.options.groupExamples;
    return {
      header: bytes(Float64Array.of(this.tokens, this.slots)),
      firings: bytes(this.firings),
      sums: bytes(this.sums),
      maxes: bytes(this.maxes),
      hist: bytes(this.hist),
      topFill: bytes(this.topFill),
      topValue: bytes(this.topValue),
      topSeq: bytes(this.topSeq),
      topPos: bytes(this.topPos),
      topStart: bytes(this.topStart),
      topLen: bytes(this.topLen),
      topActs: bytes(this.topActs),
      scaleExp: bytes(this.scaleExp),
      slot: bytes(this.slot),
      fineCount: bytes(this.fineCount.subarray(0, n * B)),
      sampleFill: bytes(this.sampleFill.subarray(0, n * B)),
      samplePrio: bytes(this.samplePrio.subarray(0, n * B * q)),
      sampleValue: bytes(this.sampleValue.subarray(0, n * B * q)),
      sampleSeq: bytes(this.sampleSeq.subarray(0, n * B * q)),
      samplePos: bytes(this.samplePos.subarray(0, n * B * q)),
      sampleStart: bytes(this.sampleStart.subarray(0, n * B * q)),
      sampleLen: bytes(this.sampleLen.subarray(0, n * B * q)),
      sampleActs: bytes(this.sampleActs.subarray(0, n * B * q * this.window)),
    };
  }

  /** Replaces this accumulator's state by a saved one (same width and options). */
  restore(state: StatsState): void {
    const get = (name: string): Uint8Array => {
      const v = state[name];
      if (v === undefined) throw new DataError(`feature stats checkpoint: no ${JSON.stringify(name)} array`);
      return v;
    };
    const fill = <
      T extends Float64Array | Float32Array | Int32Array | Uint32Array | Uint16Array | Uint8Array,
    >(
      name: string,
      make: (buf: ArrayBuffer) => T,
      length: number,
    ): T => {
      const raw = get(name);
      const copy = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
      const t = make(copy);
      if (t.length !== length) {
        throw new DataError(`feature stats checkpoint: ${name} holds ${t.length} values, expected ${length}`);
      }
      return t;
    };
    const header = fill("header", (b) => new Float64Array(b), 2);
    const w = this.width;
    const k = this.options.topK;
    const W = this.window;
    const B = this.options.fineBins;
    const q = this.options.groupExamples;
    const n = header[1];
    this.tokens = header[0];
    this.firings = fill("firings", (b) => new Float64Array(b), w);
    this.sums = fill("sums", (b) => new Float64Array(b), w);
    this.maxes = fill("maxes", (b) => new Float32Array(b), w);
    this.hist = fill("hist", (b) => new Uint32Array(b), w * HIST_BINS);
    this.topFill = fill("topFill", (b) => new Int32Array(b), w);
    this.topValue = fill("topValue", (b) => new Float32Array(b), w * k);
    this.topSeq = fill("topSeq", (b) => new Int32Array(b), w * k);
    this.topPos = fill("topPos", (b) => new Int32Array(b), w * k);
    this.topStart = fill("topStart", (b) => new Int32Array(b), w * k);
    this.topLen = fill("topLen", (b) => new Int32Array(b), w * k);
    this.topActs = fill("topActs", (b) => new Float32Array(b), w * k * W);
    this.scaleExp = fill("scaleExp", (b) => new Int32Array(b), w);
    this.slot = fill("slot", (b) => new Int32Array(b), w);
    this.slots = n;
    this.fineCount = fill("fineCount", (b) => new Uint32Array(b), n * B);
    this.sampleFill = fill("sampleFill", (b) => new Uint8Array(b), n * B);
    this.samplePrio = fill("samplePrio", (b) => new Uint32Array(b), n * B * q);
    this.sampleValue = fill("sampleValue", (b) => new Float32Array(b), n * B * q);
    this.sampleSeq = fill("sampleSeq", (b) => new Int32Array(b), n * B * q);
    this.samplePos = fill("samplePos", (b) => new Int32Array(b), n * B * q);
    this.sampleStart = fill("sampleStart", (b) => new Int32Array(b), n * B * q);
    this.sampleLen = fill("sampleLen", (b) => new Int32Array(b), n * B * q);
    this.sampleActs = fill("sampleActs", (b) => new Uint16Array(b), n * B * q * W);
  }

  private newSlot(): number {
    const B = this.options.fineBins;
    const q = this.options.groupExamples;
    const W = this.window;
    const s = this.slots++;
    if (this.slots * B > this.fineCount.length) {
      const cap = Math.max(64, this.slots * 2);
      const grow = <T extends Uint32Array | Uint8Array | Float32Array | Int32Array | Uint16Array>(
        a: T,
        per: number,
        make: (n: number) => T,
      ): T => {
        const b = make(cap * per);
        b.set(a);
        return b;
      };
      this.fineCount = grow(this.fineCount, B, (n) => new Uint32Array(n));
      this.sampleFill = grow(this.sampleFill, B, (n) => new Uint8Array(n));
      this.samplePrio = grow(this.samplePrio, B * q, (n) => new Uint32Array(n));
      this.sampleValue = grow(this.sampleValue, B * q, (n) => new Float32Array(n));
      this.sampleSeq = grow(this.sampleSeq, B * q, (n) => new Int32Array(n));
      this.samplePos = grow(this.samplePos, B * q, (n) => new Int32Array(n));
      this.sampleStart = grow(this.sampleStart, B * q, (n) => new Int32Array(n));
      this.sampleLen = grow(this.sampleLen, B * q, (n) => new Int32Array(n));
      this.sampleActs = grow(this.sampleActs, B * q * W, (n) => new Uint16Array(n));
    }
    return s;
  }

  /** Doubles feature f's grid scale until it reaches 2^exp, merging fine bins in pairs. */
  private rescale(f: number, s: number, exp: number): void {
    const B = this.options.fineBins;
    const q = this.options.groupExamples;
    while (this.scaleExp[f] < exp) {
      for (let j = 0; j < B / 2; j++) {
        const dst = s * B + j;
        const a = s * B + 2 * j;
        const b = a + 1;
        // gather both cells' samples, keep the q best, write into dst
        const cand: number[] = [];
        for (let i = 0; i < this.sampleFill[a]; i++) cand.push(a * q + i);
        for (let i = 0; i < this.sampleFill[b]; i++) cand.push(b * q + i);
        cand.sort((x, y) => this.compareSamples(x, y));
        const keep = cand.slice(0, q).map((i) => this.readSample(i));
        const count = this.fineCount[a] + this.fineCount[b];
        this.fineCount[dst] = count;
        this.sampleFill[dst] = keep.length;
        for (let i = 0; i < keep.length; i++) this.writeSample(dst * q + i, keep[i]);
      }
      for (let j = B / 2; j < B; j++) {
        this.fineCount[s * B + j] = 0;
        this.sampleFill[s * B + j] = 0;
      }
      this.scaleExp[f]++;
    }
  }

  private readSample(i: number): {
    prio: number;
    value: number;
    seq: number;
    pos: number;
    start: number;
    len: number;
    acts: Uint16Array;
  } {
    const W = this.window;
    return {
      prio: this.samplePrio[i],
      value: this.sampleValue[i],
      seq: this.sampleSeq[i],
      pos: this.samplePos[i],
      start: this.sampleStart[i],
      len: this.sampleLen[i],
      acts: this.sampleActs.slice(i * W, (i + 1) * W),
    };
  }

  private writeSample(i: number, s: ReturnType<FeatureStats["readSample"]>): void {
    this.samplePrio[i] = s.prio;
    this.sampleValue[i] = s.value;
    this.sampleSeq[i] = s.seq;
    this.samplePos[i] = s.pos;
    this.sampleStart[i] = s.start;
    this.sampleLen[i] = s.len;
    this.sampleActs.set(s.acts, i * this.window);
  }

  /** Sample order: lower priority first, then lower (sequence, position). */
  private compareSamples(x: number, y: number): number {
    return (
      this.samplePrio[x] - this.samplePrio[y] ||
      this.sampleSeq[x] - this.sampleSeq[y] ||
      this.samplePos[x] - this.samplePos[y]
    );
  }

  private sampleWorse(x: number, y: number): boolean {
    return this.compareSamples(x, y) > 0;
  }

  private beats(prio: number, seq: number, pos: number, i: number): boolean {
    const p = this.samplePrio[i];
    if (prio !== p) return prio < p;
    const s = this.sampleSeq[i];
    if (seq !== s) return seq < s;
    return pos < this.samplePos[i];
  }

  private putSample(
    i: number,
    prio: number,
    v: number,
    seq: number,
    pos: number,
    f: number,
    keep: Uint8Array,
    acts: SequenceActs,
  ): void {
    const W = this.window;
    const start = Math.max(0, pos - this.options.before);
    const end = Math.min(acts.length, pos + this.options.after + 1);
    this.samplePrio[i] = prio;
    this.sampleValue[i] = v;
    this.sampleSeq[i] = seq;
    this.samplePos[i] = pos;
    this.sampleStart[i] = start;
    this.sampleLen[i] = end - start;
    const base = i * W;
    this.sampleActs.fill(0, base, base + W);
    for (let p = start; p < end; p++) {
      if (keep[p] !== 0) this.sampleActs[base + p - start] = toBf16(actAt(acts, p, f));
    }
  }

  /** Heap order: a is worse than b (lower activation, or equal and later sequence). */
  private topWorse(a: number, b: number): boolean {
    const va = this.topValue[a];
    const vb = this.topValue[b];
    if (va !== vb) return va < vb;
    return this.topSeq[a] > this.topSeq[b];
  }

  private offerTop(
    f: number,
    v: number,
    seq: number,
    pos: number,
    keep: Uint8Array,
    acts: SequenceActs,
  ): void {
    const k = this.options.topK;
    const base = f * k;
    const n = this.topFill[f];
    let at: number;
    if (n < k) {
      at = base + n;
      this.topFill[f] = n + 1;
      this.writeTop(at, v, seq, pos, f, keep, acts);
      // sift up
      let i = n;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!this.topWorse(base + i, base + parent)) break;
        this.swapTop(base + i, base + parent);
        i = parent;
      }
      return;
    }
    const rv = this.topValue[base];
    if (!(v > rv || (v === rv && seq < this.topSeq[base]))) return;
    this.writeTop(base, v, seq, pos, f, keep, acts);
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < k && this.topWorse(base + l, base + m)) m = l;
      if (r < k && this.topWorse(base + r, base + m)) m = r;
      if (m === i) break;
      this.swapTop(base + i, base + m);
      i = m;
    }
  }

  private writeTop(
    at: number,
    v: number,
    seq: number,
    pos: number,
    f: number,
    keep: Uint8Array,
    acts: SequenceActs,
  ): void {
    const W = this.window;
    const start = Math.max(0, pos - this.options.before);
    const end = Math.min(acts.length, pos + this.options.after + 1);
    this.topValue[at] = v;
    this.topSeq[at] = seq;
    this.topPos[at] = pos;
    this.topStart[at] = start;
    this.topLen[at] = end - start;
    const base = at * W;
    this.topActs.fill(0, base, base + W);
    for (let p = start; p < end; p++) if (keep[p] !== 0) this.topActs[base + p - start] = actAt(acts, p, f);
  }

  private swapTop(a: number, b: number): void {
    const W = this.window;
    const sw = (arr: Float32Array | Int32Array): void => {
      const t = arr[a];
      arr[a] = arr[b];
      arr[b] = t;
    };
    sw(this.topValue);
    sw(this.topSeq);
    sw(this.topPos);
    sw(this.topStart);
    sw(this.topLen);
    const tmp = this.topActs.slice(a * W, (a + 1) * W);
    this.topActs.copyWithin(a * W, b * W, (b + 1) * W);
    this.topActs.set(tmp, b * W);
  }

  private groupsOf(f: number): RawGroup[] {
    const G = this.options.groups;
    const B = this.options.fineBins;
    const q = this.options.groupExamples;
    const s = this.slot[f];
    const max = this.maxes[f];
    if (s === NO_SLOT || !(max > 0)) return [];
    const scale = 2 ** this.scaleExp[f];
    const w = scale / B;
    // grid edges (in fine bins) nearest max * g / G; the last covers the bin holding the max
    const top = Math.min(B, Math.max(1, Math.ceil(max / w)));
    const edges: number[] = [0];
    for (let g = 1; g < G; g++)
      edges.push(Math.min(top, Math.max(edges[g - 1], Math.round((max * g) / G / w))));
    edges.push(top);
    const out: RawGroup[] = [];
    for (let g = 0; g < G; g++) {
      const cand: number[] = [];
      let count = 0;
      for (let b = edges[g]; b < edges[g + 1]; b++) {
        const cell = s * B + b;
        count += this.fineCount[cell];
        for (let i = 0; i < this.sampleFill[cell]; i++) cand.push(cell * q + i);
      }
      cand.sort((x, y) => this.compareSamples(x, y));
      const examples = cand.slice(0, q).map((i): RawExample => {
        const len = this.sampleLen[i];
        const acts = new Float32Array(len);
        for (let t = 0; t < len; t++) acts[t] = fromBf16(this.sampleActs[i * this.window + t]);
        return {
          sequence: this.sampleSeq[i],
          position: this.samplePos[i],
          activation: this.sampleValue[i],
          start: this.sampleStart[i],
          acts,
        };
      });
      // examples in activation order within the group, highest first
      examples.sort(
        (a, b) => b.activation - a.activation || a.sequence - b.sequence || a.position - b.position,
      );
      out.push({ lo: edges[g] * w, hi: edges[g + 1] * w, count, examples });
    }
    return out;
  }
}

/** Feature f's activation at sequence position p (0 when inactive): binary search of the row. */
export function actAt(acts: SequenceActs, p: number, f: number): number {
  const r = acts.row0 + p;
  let lo = acts.offsets[r];
  let hi = acts.offsets[r + 1] - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = acts.indices[mid];
    if (c === f) return acts.values[mid];
    if (c < f) lo = mid + 1;
    else hi = mid - 1;
  }
  return 0;
}
