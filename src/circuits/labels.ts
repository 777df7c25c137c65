/**
 * Labels for feature nodes from a feature statistics database (src/features): the feature's top
 * promoted tokens and the snippet around its top activating context, e.g.
 * `+" are" " have" " will" · …capture[ and] examine`. Feature spaces are matched to the graph's
 * dictionaries as steering does (`statisticsSpace`); a dictionary without statistics gets no label.
 */
import type { FeatureDatabase } from "../features/db.js";
import { statisticsSpace } from "../features/steering.js";
import type { TranscoderSet } from "./transcoders.js";

export type FeatureLabeller = (layer: number, feature: number) => string;

export function featureLabeller(
  db: FeatureDatabase,
  set: TranscoderSet,
  paths: readonly string[],
): FeatureLabeller {
  const spaceOf = new Map<number, number | null>();
  const space = (layer: number): number | null => {
    if (!spaceOf.has(layer)) {
      try {
        const s =
          set.kind === "clt"
            ? statisticsSpace(db, paths[0], set.spec(0), layer)
            : statisticsSpace(db, paths[layer], set.spec(layer), null);
        spaceOf.set(layer, s.space);
      } catch {
        spaceOf.set(layer, null);
      }
    }
    return spaceOf.get(layer) ?? null;
  };
  return (layer, feature) => {
    const s = space(layer);
    if (s === null) return "";
    const page = db.page(s, feature);
    const parts: string[] = [];
    if (page.logits !== null && page.logits.top.length > 0)
      parts.push(
        `+${page.logits.top
          .slice(0, 3)
          .map((e) => JSON.stringify(e.token))
          .join(" ")}`,
      );
    const top = page.topContexts[0];
    if (top !== undefined) {
      const from = Math.max(0, top.focus - 4);
      const to = Math.min(top.tokens.length, top.focus + 2);
      const text = top.tokens
        .slice(from, to)
        .map((t, i) => (from + i === top.focus ? `[${t}]` : t))
        .join("")
        .replace(/\s+/g, " ");
      parts.push(`…${text}`);
    }
    return parts.join(" · ");
  };
}
