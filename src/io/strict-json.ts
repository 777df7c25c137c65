/**
 * A strict JSON parser (RFC 8259) for headers of untrusted files.
 *
 * `JSON.parse` silently keeps the last of duplicate keys and turns `3.0`, `3` and `3e0` into the
 * same number, so it cannot tell a safetensors header that repeats a tensor name, or gives a float
 * shape entry, from a valid one. This parser rejects duplicate keys at every level, keeps each
 * number's source text (so callers can insist on integer syntax and exact values), and limits
 * nesting depth so that `[[[[...` cannot overflow the stack.
 */

/** A JSON number with the exact text it was written as. */
export class JsonNumber {
  constructor(readonly text: string) {}

  /** True when the text is an integer with no fraction or exponent (`-0` included). */
  get isIntegerSyntax(): boolean {
    return /^-?(0|[1-9][0-9]*)$/.test(this.text);
  }

  /** The exact value of an integer-syntax number; throws on fraction or exponent syntax. */
  toBigInt(): bigint {
    if (!this.isIntegerSyntax) throw new RangeError(`${this.text} is not an integer`);
    return BigInt(this.text);
  }

  get value(): number {
    return Number(this.text);
  }
}

/** A parsed value: objects keep their key order in a Map. */
export type JsonNode = null | boolean | string | JsonNumber | JsonNode[] | Map<string, JsonNode>;

/** Plain JSON values, for handing parsed data to callers that don't care about number text. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export class StrictJsonError extends Error {}

const MAX_DEPTH = 64;

export function parseStrictJson(text: string): JsonNode {
  const p = new Parser(text);
  p.skipWhitespace();
  const value = p.parseValue(0);
  p.skipWhitespace();
  if (p.pos !== text.length) p.fail("unexpected text after the JSON value");
  return value;
}

export function toPlainJson(node: JsonNode): JsonValue {
  if (node instanceof JsonNumber) return node.value;
  if (Array.isArray(node)) return node.map(toPlainJson);
  if (node instanceof Map) return toPlainObject(node);
  return node;
}

export function toPlainObject(node: ReadonlyMap<string, JsonNode>): { [key: string]: JsonValue } {
  const out: { [key: string]: JsonValue } = {};
  for (const [k, v] of node) {
    // defineProperty: a key named "__proto__" must stay an ordinary key
    Object.defineProperty(out, k, {
      value: toPlainJson(v),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

export function describeJsonType(node: JsonNode): string {
  if (node === null) return "null";
  if (node instanceof JsonNumber) return `number ${node.text}`;
  if (Array.isArray(node)) return "an array";
  if (node instanceof Map) return "an object";
  if (typeof node === "string") return "a string";
  return `boolean ${node}`;
}

class Parser {
  pos = 0;
  constructor(readonly text: string) {}

  fail(what: string): never {
    if (this.pos >= this.text.length) throw new StrictJsonError(`unexpected end of JSON (${what})`);
    throw new StrictJsonError(`${what} at character ${this.pos}`);
  }

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  parseValue(depth: number): JsonNode {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.parseObject(depth);
      case "[":
        return this.parseArray(depth);
      case '"':
        return this.parseString();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      case undefined:
        return this.fail("expected a value");
      default:
        if (c === "-" || (c >= "0" && c <= "9")) return this.parseNumber();
        return this.fail(`unexpected ${JSON.stringify(c)}`);
    }
  }

  literal<T extends JsonNode>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail("invalid literal");
    this.pos += word.length;
    return value;
  }

  parseNumber(): JsonNumber {
    const m = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
    m.lastIndex = this.pos;
    const r = m.exec(this.text);
    if (r === null) return this.fail("invalid number");
    this.pos += r[0].length;
    return new JsonNumber(r[0]);
  }

  parseString(): string {
    const t = this.text;
    const start = this.pos;
    let i = start + 1;
    let escaped = false;
    for (;;) {
      if (i >= t.length) {
        this.pos = start;
        this.fail("unterminated string");
      }
      const c = t.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) {
        this.pos = i;
        this.fail("control character in string");
      }
      if (c === 0x5c) {
        escaped = true;
        i += 2;
      } else {
        i++;
      }
    }
    this.pos = i + 1;
    const raw = t.slice(start, i + 1);
    if (!escaped) return raw.slice(1, -1);
    let s: unknown;
    try {
      s = JSON.parse(raw);
    } catch {
      this.pos = start;
      this.fail("invalid escape in string");
    }
    if (typeof s !== "string") return this.fail("invalid string");
    // An escaped lone surrogate (\ud800) is not a Unicode scalar value.
    if (/\p{Cs}/u.test(s)) {
      this.pos = start;
      this.fail("lone surrogate escape in string");
    }
    return s;
  }

  parseArray(depth: number): JsonNode[] {
    this.pos++;
    const out: JsonNode[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      out.push(this.parseValue(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos];
      if (c === ",") this.pos++;
      else if (c === "]") {
        this.pos++;
        return out;
      } else this.fail("expected ',' or ']'");
    }
  }

  parseObject(depth: number): Map<string, JsonNode> {
    this.pos++;
    const out = new Map<string, JsonNode>();
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') this.fail("expected a string key");
      const keyPos = this.pos;
      const key = this.parseString();
      if (out.has(key)) {
        this.pos = keyPos;
        this.fail(`duplicate key ${JSON.stringify(key)}`);
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") this.fail("expected ':'");
      this.pos++;
      this.skipWhitespace();
      out.set(key, this.parseValue(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos];
      if (c === ",") this.pos++;
      else if (c === "}") {
        this.pos++;
        return out;
      } else this.fail("expected ',' or '}'");
    }
  }
}
