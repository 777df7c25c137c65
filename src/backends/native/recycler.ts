/**
 * A pool of output arrays for the native backend (`Backend.allocOutput` / `Backend.recycle`).
 *
 * The forward pass hands back each layer's intermediates; the next allocation takes the smallest
 * kept buffer that holds it (best fit, at most `maxSlack` times larger), as a view of the buffer's
 * front. Reusing memory that is already mapped saves the page faults and the garbage of a fresh
 * array. Best fit, not only equal lengths, lets differently sized outputs share buffers: the
 * attention blocks of a long prompt score 128, 256, 384, ... keys, and would otherwise each keep
 * their own. At most `maxBytes` are kept, the oldest given up first.
 *
 * Only an array this pool handed out, whole and unchanged (not a view or slice of it), is taken
 * back: a narrowed view of a live tensor can never free that tensor's storage.
 */
export interface RecyclerOptions {
  /** Outputs shorter than this (elements) are neither pooled nor taken from the pool. */
  readonly minLength: number;
  /** The most bytes kept at once. */
  readonly maxBytes: number;
  /** A request may take a buffer at most this many times its own length. */
  readonly maxSlack: number;
  /** Called with each buffer given up (no longer kept, and dead), e.g. to return its pages now. */
  readonly onDrop?: (buffer: ArrayBufferLike) => void;
}

export class Recycler {
  /** Kept buffers by capacity (elements), most recently kept last. */
  private readonly byCapacity = new Map<number, ArrayBufferLike[]>();
  /** The capacities with a kept buffer, ascending. */
  private readonly capacities: number[] = [];
  /** Every kept buffer, oldest first. */
  private readonly order: ArrayBufferLike[] = [];
  /**
   * The arrays handed out and not yet brought back: only these may bring their buffer back, and
   * each once. (A set of the arrays rather than a map from their buffers, which would keep a dead
   * array's buffer reachable until a full collection: 1 GiB of logits, say.)
   */
  private readonly issued = new WeakSet<Float32Array>();
  /** Buffers kept since the last `trim`. */
  private readonly recent = new Set<ArrayBufferLike>();
  private bytes = 0;

  constructor(private readonly options: RecyclerOptions) {}

  /**
   * A kept buffer's front as an array of `length`, or undefined when none fits. With `exact`, only a
   * buffer of exactly that length.
   */
  take(length: number, exact = false): Float32Array | undefined {
    if (length < this.options.minLength) return undefined;
    const i = lowerBound(this.capacities, length);
    if (i === this.capacities.length) return undefined;
    const capacity = this.capacities[i];
    if (capacity > (exact ? length : length * this.options.maxSlack)) return undefined;
    const list = this.byCapacity.get(capacity);
    const buffer = list?.at(-1);
    if (list === undefined || buffer === undefined) return undefined;
    this.remove(buffer, capacity, list);
    return this.issue(new Float32Array(buffer, 0, length));
  }

  /** Registers a freshly allocated output as one that `keep` may take back. */
  issue(data: Float32Array): Float32Array {
    if (data.length >= this.options.minLength && data.byteOffset === 0) this.issued.add(data);
    return data;
  }

  /** Keeps `data`'s buffer for later outputs when it is an array this pool issued; else nothing. */
  keep(data: Float32Array): void {
    if (!this.issued.delete(data)) return;
    const buffer = data.buffer;
    if (buffer.byteLength > this.options.maxBytes) return;
    while (this.bytes + buffer.byteLength > this.options.maxBytes) this.evictOldest();
    const capacity = buffer.byteLength / Float32Array.BYTES_PER_ELEMENT;
    const list = this.byCapacity.get(capacity);
    if (list) list.push(buffer);
    else {
      this.byCapacity.set(capacity, [buffer]);
      this.capacities.splice(lowerBound(this.capacities, capacity), 0, capacity);
    }
    this.order.push(buffer);
    this.recent.add(buffer);
    this.bytes += buffer.byteLength;
  }

  /** Gives up `data`'s buffer at once (`onDrop`) when it is an array this pool issued; else nothing. */
  discard(data: Float32Array): void {
    if (this.issued.delete(data)) this.options.onDrop?.(data.buffer);
  }

  /**
   * Gives up every buffer kept before the last call that nothing took since: what one forward pass
   * hands back, the next of the same shapes reuses, and buffers of shapes no longer used go.
   */
  trim(): void {
    for (const buffer of [...this.order]) if (!this.recent.has(buffer)) this.evict(buffer);
    this.recent.clear();
  }

  /**
   * Gives up every kept buffer that no request of at most `length` elements may take (longer than
   * `maxSlack` times it): a workload that moves to smaller shapes does not hold the larger ones.
   */
  dropUnfit(length: number): void {
    const limit = length * this.options.maxSlack;
    for (const buffer of [...this.order])
      if (buffer.byteLength / Float32Array.BYTES_PER_ELEMENT > limit) this.evict(buffer);
  }

  private evictOldest(): void {
    this.evict(this.order[0]);
  }

  private evict(buffer: ArrayBufferLike): void {
    const capacity = buffer.byteLength / Float32Array.BYTES_PER_ELEMENT;
    const list = this.byCapacity.get(capacity);
    if (list) this.remove(buffer, capacity, list);
    this.options.onDrop?.(buffer);
  }

  private remove(buffer: ArrayBufferLike, capacity: number, list: ArrayBufferLike[]): void {
    list.splice(list.lastIndexOf(buffer), 1);
    if (list.length === 0) {
      this.byCapacity.delete(capacity);
      this.capacities.splice(lowerBound(this.capacities, capacity), 1);
    }
    this.order.splice(this.order.indexOf(buffer), 1);
    this.recent.delete(buffer);
    this.bytes -= buffer.byteLength;
  }
}

/** The first index of ascending `xs` whose value is at least `x`. */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
