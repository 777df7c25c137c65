/** The corpus sources, in the order their documents appear in the output. */
import type { CorpusSource } from "../source.js";
import { brown } from "./brown.js";
import { fortunes } from "./fortunes.js";
import { jargon } from "./jargon.js";
import { janeaustenr, mobydick } from "./novels.js";
import { kjv, web } from "./sword.js";

export const SOURCES: readonly CorpusSource[] = [brown, janeaustenr, mobydick, web, kjv, fortunes, jargon];
