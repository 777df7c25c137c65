/**
 * A feature page as one self-contained HTML file (inline CSS and SVG, no scripts, no external
 * references), laid out as SAEDashboard's feature-centric view: summary, activation histogram,
 * logit effects, nearest features, top activating contexts and the interval groups' examples.
 * Tokens are shaded in a single hue with opacity = activation / the feature's max; the example's
 * own token is outlined; hovering a token shows its exact activation. Every string is escaped.
 */
import type { ContextExample, FeaturePage } from "./page.js";
import { fromBf16, toBf16 } from "./stats.js";

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function num(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(1) : a >= 0.01 ? v.toPrecision(3) : v.toExponential(2);
}

/** Shading opacity of an activation, in [0, 1], rounded to 3 decimals. */
export function tokenAlpha(act: number, max: number): number {
  if (!(act > 0) || !(max > 0)) return 0;
  return Math.round(Math.min(1, act / max) * 1000) / 1000;
}

/** A token as shown: newlines and tabs made visible, spaces kept (white-space: pre). */
function visible(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "→");
}

function contextHtml(e: ContextExample, max: number): string {
  const spans = e.tokens.map((t, i) => {
    const a = tokenAlpha(e.acts[i], max);
    const cls = i === e.focus ? ' class="focus"' : "";
    return `<span${cls} style="background:rgba(230,110,20,${a})" title="${escapeHtml(`${JSON.stringify(t)}: ${e.acts[i]}`)}">${escapeHtml(visible(t))}</span>`;
  });
  return `<div class="ctx"><span class="act">${num(e.activation)}</span><span class="toks">${spans.join("")}</span></div>`;
}

function histogramSvg(page: FeaturePage): string {
  const { counts, edges } = page.histogram;
  if (counts.length === 0) return '<p class="muted">The feature never fired.</p>';
  const W = 560;
  const H = 140;
  const pad = 28;
  const top = Math.max(...counts);
  const bw = (W - pad) / counts.length;
  const bars = counts
    .map((c, i) => {
      const h = top > 0 ? ((H - pad) * c) / top : 0;
      const x = pad + i * bw;
      return `<rect x="${x.toFixed(1)}" y="${(H - pad - h).toFixed(1)}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${h.toFixed(1)}"><title>${escapeHtml(`${num(edges[i])} - ${num(edges[i + 1])}: ${c}`)}</title></rect>`;
    })
    .join("");
  const label = (x: number, text: string, anchor: string) =>
    `<text x="${x.toFixed(1)}" y="${H - 10}" text-anchor="${anchor}">${escapeHtml(text)}</text>`;
  return `<svg class="hist" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="activation histogram">
<line x1="${pad}" y1="${H - pad}" x2="${W}" y2="${H - pad}" stroke="#888"/>
<text x="2" y="12">${top}</text>${bars}
${label(pad, num(edges[0]), "start")}${label(W, num(edges[edges.length - 1]), "end")}${label((pad + W) / 2, "activation (log-spaced bins)", "middle")}
</svg>`;
}

function logitTable(page: FeaturePage): string {
  if (page.logits === null)
    return '<p class="muted">The decoder does not write to the residual stream: no logit effects.</p>';
  const rows = (list: readonly { token: string; value: number }[], cls: string) =>
    list
      .map(
        (e) =>
          `<tr><td class="tok">${escapeHtml(visible(e.token))}</td><td class="${cls}">${num(e.value)}</td></tr>`,
      )
      .join("");
  return `<div class="cols"><table><tr><th colspan="2">promotes</th></tr>${rows(page.logits.top, "pos")}</table>
<table><tr><th colspan="2">suppresses</th></tr>${rows(page.logits.bottom, "neg")}</table></div>`;
}

const STYLE = `body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #ddd}
.muted{color:#777}.stats span{margin-right:18px}.cols{display:flex;gap:32px}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left}.pos{color:#1a6}.neg{color:#c33}
.tok,.toks{font-family:ui-monospace,monospace;white-space:pre}
.ctx{display:flex;gap:10px;margin:3px 0}.act{width:64px;text-align:right;color:#555;flex:none}
.toks span{border-radius:2px}.toks .focus{outline:1.5px solid #a40;}
.hist rect{fill:#e66e14}.hist text{font-size:11px;fill:#555}`;

export function featureDashboardHtml(page: FeaturePage, options: { readonly title?: string } = {}): string {
  const s = page.space;
  const title =
    options.title ??
    `Feature ${page.feature} · ${s.site}${s.layer === null ? "" : ` (source layer ${s.layer})`}`;
  const max = page.maxActivation;
  // Window activations are stored in bfloat16: shade against the max rounded the same way, so the
  // token at the max is fully shaded.
  const shade = fromBf16(toBf16(max));
  const top =
    page.topContexts.length === 0
      ? '<p class="muted">No contexts: the feature never fired.</p>'
      : page.topContexts.map((e) => contextHtml(e, shade)).join("\n");
  const groups = page.intervals
    .slice()
    .reverse()
    .map(
      (g) =>
        `<h3>${num(g.lo)} &lt; activation &le; ${num(g.hi)} <span class="muted">(${g.count} firings, ${(g.fraction * 100).toFixed(1)} %)</span></h3>\n${g.examples.map((e) => contextHtml(e, shade)).join("\n")}`,
    )
    .join("\n");
  const neighbours =
    page.neighbours.length === 0
      ? ""
      : `<h2>Nearest features (decoder cosine)</h2><p>${page.neighbours.map((n) => `${n.feature} <span class="muted">(${n.cosine.toFixed(3)})</span>`).join(" · ")}</p>`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="muted">${escapeHtml(`${s.dictionary} · ${s.architecture} · ${s.width} features`)}</p>
<p class="stats"><span>density ${(page.density * 100).toPrecision(3)} % (${page.firings} of ${page.tokens} tokens)</span><span>mean ${num(page.meanActivation)}</span><span>max ${num(max)}</span></p>
<h2>Activation histogram</h2>
${histogramSvg(page)}
<h2>Logit effects</h2>
${logitTable(page)}
${neighbours}
<h2>Top activating contexts</h2>
${top}
<h2>Examples by activation interval</h2>
${groups}
</body></html>
`;
}
