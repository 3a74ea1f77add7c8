// Tables of the administration pages: a cell per value (times in CST, anything nested as
// compact JSON), column names in Chinese and English, cards on a phone.
import { esc, time, code, codeLabel, label } from './i18n.js';

/** One value as a cell's HTML. */
export function cell(v) {
  if (v == null) return '';
  if (typeof v === 'number' && v > 1e12 && v < 1e14) return time(v);
  if (typeof v === 'object') return `<span class="code">${esc(JSON.stringify(v).slice(0, 300))}</span>`;
  return esc(v);
}

/** A table of `rows` (objects) with `columns` (default: the first row's keys), or "none". */
export function table(rows, columns, id) {
  if (!rows.length) return `<p class="muted">${label('none')}</p>`;
  const cols = columns || Object.keys(rows[0]);
  return `<div class="scroll"><table class="cards"${id ? ` id="${id}"` : ''}><thead><tr>${cols.map(c => `<th>${codeLabel('col', c)}</th>`).join('')}</tr></thead><tbody>
    ${rows.map(r => `<tr>${cols.map(c => `<td data-h="${esc(code('col', c))}">${cell(r[c])}</td>`).join('')}</tr>`).join('')}</tbody></table></div>`;
}

/**
 * A table whose cells are already HTML: `cols` are column keys (labelled as `col.KEY`),
 * `rows` are [attributes of the tr, [cell HTML per column]].
 */
export function htmlTable(id, cols, rows) {
  if (!rows.length) return `<p class="muted" id="${esc(id)}-none">${label('none')}</p>`;
  return `<div class="scroll"><table class="cards" id="${esc(id)}"><thead><tr>${cols.map(c => `<th>${codeLabel('col', c)}</th>`).join('')}</tr></thead><tbody>
    ${rows.map(([attrs, cells]) => `<tr${attrs ? ' ' + attrs : ''}>${cells.map((h, i) => `<td data-h="${esc(code('col', cols[i]))}">${h}</td>`).join('')}</tr>`).join('')}</tbody></table></div>`;
}

/** A failed read or write as a message: what failed (a label) and the server's words. */
export function failure(key, e, id) {
  return `<p class="msg"${id ? ` id="${id}"` : ''}>${label(key)}: <span class="server-msg">${esc(e.message)}</span></p>`;
}
