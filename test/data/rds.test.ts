import assert from "node:assert/strict";
import { test } from "node:test";
import { deflateSync, gzipSync } from "node:zlib";
import { DataError } from "../../src/core/errors.js";
import { asStrings, getNamed, readLazyLoadDb, readRData, readRds, unserialize } from "../../src/data/rds.js";
import { XdrWriter } from "./fixtures.js";

test("reads a gzip-compressed XDR character vector, NA and UTF-8 included", () => {
  const bytes = new XdrWriter().header().strsxp(["hello", null, "wörld"]).bytes();
  const v = readRds(gzipSync(bytes));
  assert.equal(v.kind, "character");
  assert.deepEqual(asStrings(v), ["hello", null, "wörld"]);
});

test("reads a list with a names attribute, and a symbol reused by reference", () => {
  // list(a = quote(foo), b = 1:2, c = quote(foo)): the second `foo` is a REFSXP to the first
  // symbol read (reference index 1, packed into the flags above the type byte).
  const w = new XdrWriter()
    .header()
    .int(19 | (1 << 9))
    .int(3);
  w.symbol("foo");
  w.int(13).int(2).int(1).int(2);
  w.int((1 << 8) | 255);
  w.cell().symbol("names").strsxp(["a", "b", "c"]).nil();
  const v = unserialize(w.bytes());
  assert.equal(v.kind, "list");
  assert.deepEqual(getNamed(v, "a"), { kind: "symbol", name: "foo" });
  assert.deepEqual(getNamed(v, "c"), { kind: "symbol", name: "foo" });
  const b = getNamed(v, "b")!;
  assert.equal(b.kind, "integer");
  assert.deepEqual(b.kind === "integer" ? [...b.values] : [], [1, 2]);
  assert.equal(getNamed(v, "d"), undefined);
});

test("a factor reads as its labels; an ALTREP compact sequence expands", () => {
  const w = new XdrWriter()
    .header()
    .int(13 | (1 << 9) | (1 << 8))
    .int(3)
    .int(2)
    .int(1)
    .int(-2147483648);
  w.cell().symbol("levels").strsxp(["lo", "hi"]);
  w.cell().symbol("class").strsxp(["factor"]);
  w.nil();
  assert.deepEqual(asStrings(unserialize(w.bytes())), ["hi", "lo", null]);

  const seq = new XdrWriter().header().int(238);
  seq.int(2).symbol("compact_intseq").int(2).symbol("base").int(2).int(13).int(1).int(13).nil(); // info pairlist
  seq.int(14).int(3).double(4).double(10).double(2); // state: n, start, step
  seq.nil(); // attributes
  const v = unserialize(seq.bytes());
  assert.equal(v.kind, "integer");
  assert.deepEqual(v.kind === "integer" ? [...v.values] : [], [10, 12, 14, 16]);
});

test("reads a lazy-load database (.rdx index + zlib blobs in .rdb)", () => {
  const obj = (s: string): Buffer => new XdrWriter().header().strsxp([s, "line two"]).bytes();
  const blob = (b: Buffer): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, deflateSync(b)]);
  };
  const first = blob(obj("first book"));
  const second = blob(obj("second book"));
  const rdb = Buffer.concat([first, second]);
  const loc = (w: XdrWriter, off: number, len: number): XdrWriter => w.int(13).int(2).int(off).int(len);
  const rdx = new XdrWriter()
    .header()
    .int(19 | (1 << 9))
    .int(3);
  rdx.int(19 | (1 << 9)).int(2);
  loc(rdx, 0, first.length);
  loc(rdx, first.length, second.length);
  rdx.cell().symbol("names").strsxp(["one", "two"]).nil();
  rdx.int(19).int(0); // references
  rdx.int(10).int(1).int(1); // compressed = TRUE
  rdx.cell().symbol("names").strsxp(["variables", "references", "compressed"]).nil();
  const db = readLazyLoadDb(gzipSync(rdx.bytes()), rdb);
  assert.deepEqual([...db.keys()], ["one", "two"]);
  assert.deepEqual(asStrings(db.get("two")!), ["second book", "line two"]);
});

test("reads an .rda save file", () => {
  const w = new XdrWriter().raw(Buffer.from("RDX3\n")).header();
  w.cell().symbol("greeting").strsxp(["hi"]).nil();
  const m = readRData(gzipSync(w.bytes()));
  assert.deepEqual(asStrings(m.get("greeting")!), ["hi"]);
});

test("malformed input raises DataError naming the subject", () => {
  const full = new XdrWriter().header().strsxp(["hello"]).bytes();
  assert.throws(
    () => unserialize(full.subarray(0, full.length - 2), "book.rds"),
    (e: unknown) => {
      assert.ok(e instanceof DataError);
      assert.match(e.message, /^book\.rds: .*truncated/);
      return true;
    },
  );
  assert.throws(() => unserialize(Buffer.from("A\n3\n"), "a.rds"), /ASCII format is not supported/);
  assert.throws(() => readRds(Buffer.from("BZh91AY"), "b.rds"), /bzip2/);
});
