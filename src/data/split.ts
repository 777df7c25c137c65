/**
 * The deterministic train/validation split: a document goes to validation when the first 48 bits
 * of SHA-256(id), read as a fraction of 2^48, fall below the validation fraction. The side a
 * document lands on depends only on its id, so it never moves between builds or when other
 * documents are added.
 */
import { createHash } from "node:crypto";

/** The id's position in [0, 1): SHA-256 of its UTF-8 bytes, first 6 bytes big-endian / 2^48. */
export function splitPosition(id: string): number {
  return createHash("sha256").update(id, "utf8").digest().readUIntBE(0, 6) / 2 ** 48;
}

export function isValidation(id: string, validationFraction: number): boolean {
  return splitPosition(id) < validationFraction;
}
