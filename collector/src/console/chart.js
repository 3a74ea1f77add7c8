// Time-series charts as SVG: a time axis in China Standard Time, a value axis, limit lines,
// shaded violation intervals; sized by a viewBox so that it fits any width.
import { esc, getLang } from './i18n.js';

const L = 52, R = 12, T = 12, B = 34;

function ticks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => span / s <= n) || mag * 10;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

const TIME_STEPS = [60e3, 5 * 60e3, 10 * 60e3, 15 * 60e3, 30 * 60e3, 3600e3, 2 * 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3, 2 * 86400e3, 7 * 86400e3];
function timeLabel(ms, span) {
  const d = new Date(ms + 8 * 3600e3).toISOString();
  return span > 2 * 86400e3 ? d.slice(5, 10) : span > 86400e3 ? d.slice(5, 10) + ' ' + d.slice(11, 16) : d.slice(11, 16);
}

/**
 * An SVG chart of `points` ([{ts_ms, value}]) over [x0, x1], with `limits` ({min, max}),
 * `bands` ([{start, end}] shaded) and a unit.
 */
export function chart({ points, x0, x1, limits, bands, unit, title }) {
  // As wide as the screen allows (up to 800), so that the labels keep their size on a phone.
  const W = Math.round(Math.min(800, Math.max(320, (document.documentElement.clientWidth || 800) - 48)));
  const H = W < 600 ? 200 : 260;
  const ys = points.map(p => p.value);
  if (limits) { if (limits.min != null) ys.push(limits.min); if (limits.max != null) ys.push(limits.max); }
  let y0 = ys.length ? Math.min(...ys) : 0, y1 = ys.length ? Math.max(...ys) : 1;
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 1; y0 -= pad; y1 += pad;
  const sx = x => L + (x - x0) / Math.max(1, x1 - x0) * (W - L - R);
  const sy = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const parts = [`<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title || '')}">`];
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="#fafbfc" stroke="#dde"/>`);
  for (const b of bands || []) {
    const a = Math.max(x0, b.start), e = Math.min(x1, b.end);
    if (e <= a) continue;
    parts.push(`<rect class="violation" x="${sx(a).toFixed(1)}" y="${T}" width="${Math.max(2, sx(e) - sx(a)).toFixed(1)}" height="${H - T - B}" fill="#b3261e" fill-opacity="0.15"><title>${esc(b.detail || '')}</title></rect>`);
  }
  for (const v of ticks(y0, y1, 5)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#eef"/><text class="ytick" x="${L - 4}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="11">${v}</text>`);
  }
  const span = x1 - x0, step = TIME_STEPS.find(s => span / s <= (W < 600 ? 4 : 8)) || 14 * 86400e3;
  const first = Math.ceil((x0 + 8 * 3600e3) / step) * step - 8 * 3600e3;
  for (let x = first; x <= x1; x += step) {
    parts.push(`<line x1="${sx(x).toFixed(1)}" x2="${sx(x).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#eef"/><text class="xtick" x="${sx(x).toFixed(1)}" y="${H - B + 14}" text-anchor="middle" font-size="11">${timeLabel(x, span)}</text>`);
  }
  parts.push(`<text x="${W - R}" y="${H - 4}" text-anchor="end" font-size="10" fill="#667">${getLang() === 'zh' ? '北京时间' : 'China Standard Time'}</text>`);
  if (unit) parts.push(`<text x="4" y="${T + 10}" font-size="10" fill="#667">${esc(unit)}</text>`);
  if (limits) for (const v of [limits.min, limits.max]) {
    if (v == null) continue;
    parts.push(`<line class="limit" x1="${L}" x2="${W - R}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#b3261e" stroke-dasharray="6 4"/><text x="${W - R - 2}" y="${(sy(v) - 3).toFixed(1)}" text-anchor="end" font-size="11" fill="#b3261e">${v}</text>`);
  }
  if (points.length) {
    parts.push(`<polyline class="series" fill="none" stroke="#2f6fdf" stroke-width="1.5" points="${points.map(p => sx(p.ts_ms).toFixed(1) + ',' + sy(p.value).toFixed(1)).join(' ')}"/>`);
    if (points.length < 60) for (const p of points) parts.push(`<circle cx="${sx(p.ts_ms).toFixed(1)}" cy="${sy(p.value).toFixed(1)}" r="2" fill="#2f6fdf"/>`);
  }
  parts.push('</svg>');
  return parts.join('');
}
