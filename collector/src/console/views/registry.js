// The registry (一单两库): the item list and the two libraries, and the import of a CSV or
// JSON file: a dry run first (the rows it would import, every rejected row with its line,
// field and reason, as the API answers), then, once it passes, the import after a confirmation.
import { t, esc, label, codeLabel } from './i18n.js';
import * as api from './api.js';
import { htmlTable, failure } from './tables.js';

const KINDS = { entities: 'entities_lib', inspectors: 'inspectors_lib', items: 'items' };
// The file checked last and passed, waiting for the confirmation.
let pending = null;

/** The registry tab's HTML: the import form (the admin's) and the three lists. */
export async function render() {
  const [items, entities, inspectors] = await Promise.all([api.get('/api/v1/registry/items'), api.get('/api/v1/registry/entities'), api.get('/api/v1/registry/inspectors')]);
  pending = null;
  const form = api.role() !== 'admin' ? '' : `<section id="registry-import" class="inner"><h3>${label('import_title')}</h3>
    <form id="import-form" class="filters">
      <label><span data-t="import_kind">${esc(t('import_kind'))}</span><select id="import-kind">${Object.entries(KINDS).map(([k, l]) => `<option value="${k}" data-t="${l}">${esc(t(l))}</option>`).join('')}</select></label>
      <label><span data-t="import_file">${esc(t('import_file'))}</span><input type="file" id="import-file" accept=".csv,.json,text/csv,application/json"></label>
      <button type="submit" id="import-check" data-t="import_check">${esc(t('import_check'))}</button>
    </form>
    <p class="small muted" data-t="import_hint">${esc(t('import_hint'))}</p>
    <div id="import-report" aria-live="polite"></div></section>`;
  const list = v => esc((Array.isArray(v) ? v : [v]).filter(x => x != null).join(', '));
  const items_ = htmlTable('reg-items', ['id', 'name', 'department', 'legal_basis', 'kind', 'method', 'rule_pack'], items.map(i => ['',
    [`<span class="code">${esc(i.id)}</span>`, esc(i.name), codeLabel('dept', i.department), esc(i.legal_basis), codeLabel('itemkind', i.kind), codeLabel('method', i.method), esc(i.rule_pack || '')]]));
  const entities_ = htmlTable('reg-entities', ['code', 'name', 'domain', 'district', 'risk', 'agents'], entities.slice(0, 200).map(e => ['',
    [`<a href="#/entity/${encodeURIComponent(e.code)}" class="code">${esc(e.code)}</a>`, esc(e.name), codeLabel('domain', e.domain), esc(e.district), esc(e.risk), list(e.agents)]]));
  const inspectors_ = htmlTable('reg-inspectors', ['id', 'name', 'department', 'fields', 'active'], inspectors.map(i => ['',
    [esc(i.id), esc(i.name), codeLabel('dept', i.department), (i.fields || []).map(f => codeLabel('domain', f)).join('、'), i.active ? '✓' : '✗']]));
  // The counts carry ids: after an import they are what says how many rows the library holds
  // (the entity table shows only its first 200).
  return `${form}<h3>${label('items')} (<span id="reg-items-n" class="n">${items.length}</span>)</h3>${items_}
    <h3>${label('entities_lib')} (<span id="reg-entities-n" class="n">${entities.length}</span>)</h3>${entities_}
    <h3>${label('inspectors_lib')} (<span id="reg-inspectors-n" class="n">${inspectors.length}</span>)</h3>${inspectors_}`;
}

/** The content type of a file by its name's ending, or null. */
function typeOf(name) {
  const n = name.toLowerCase();
  return n.endsWith('.csv') ? 'text/csv' : n.endsWith('.json') ? 'application/json' : null;
}

/** Every rejected row (line, field, reason), as the API lists them. */
function problems(list) {
  return htmlTable('import-problems', ['line', 'field', 'reason'], list.map(p => [
    `class="problem" data-line="${esc(p.line)}" data-field="${esc(p.field)}"`,
    [esc(p.line || ''), p.field === '-' ? label('whole_row') : `${codeLabel('col', p.field)} <span class="code">${esc(p.field)}</span>`, `<span class="server-msg">${esc(p.reason)}</span>`],
  ]));
}

/** A refusal: how many rows were read and would pass, and every problem; or the server's message. */
function refused(e) {
  const d = e.details || {};
  if (!Array.isArray(d.problems)) return failure('import_failed', e, 'import-error');
  const head = d.rows == null
    ? `${label('import_unreadable')}`
    : `${label('import_refused')} <span id="import-counts" data-rows="${esc(d.rows)}" data-accepted="${esc(d.accepted)}">${label('rows_read')} <b>${esc(d.rows)}</b> · ${label('rows_accepted')} <b>${esc(d.accepted)}</b> · ${label('rows_rejected')} <b>${esc(d.rows - d.accepted)}</b></span>`;
  return `<div id="import-refused"><p class="msg">${head}</p>${problems(d.problems)}<p class="small muted server-msg">${esc(e.message)}</p></div>`;
}

/** Wires the import form inside `root`; `reload(flash)` re-renders the tab with a message. */
export function wire(root, reload) {
  const form = root.querySelector('#import-form');
  if (!form) return;
  const out = root.querySelector('#import-report');
  const check = async () => {
    pending = null;
    const file = root.querySelector('#import-file').files[0];
    const kind = root.querySelector('#import-kind').value;
    if (!file) { out.innerHTML = `<p class="msg" id="import-error">${label('import_no_file')}</p>`; return; }
    const type = typeOf(file.name);
    if (!type) { out.innerHTML = `<p class="msg" id="import-error">${label('import_bad_ext')} <span class="code">${esc(file.name)}</span></p>`; return; }
    const text = await file.text();
    if (!text.trim()) { out.innerHTML = `<p class="msg" id="import-error">${label('import_empty')} <span class="code">${esc(file.name)}</span></p>`; return; }
    out.innerHTML = `<p>${label('loading')}</p>`;
    try {
      const r = await api.sendText('POST', `/api/v1/registry/${kind}?dry_run=true`, text, type);
      pending = { kind, text, type, name: file.name, rows: r.rows };
      out.innerHTML = `<div id="import-ok" data-rows="${esc(r.rows)}"><p class="ok">${label('import_dry_ok')} <span class="code">${esc(file.name)}</span> → ${label(KINDS[kind])}:
        ${label('rows_accepted')} <b>${esc(r.rows)}</b> · ${label('rows_rejected')} <b>0</b>. ${label('import_not_yet')}</p>
        <button type="button" class="primary" id="import-confirm" data-t="import_confirm">${esc(t('import_confirm'))}</button></div>`;
    } catch (e) { out.innerHTML = refused(e); }
  };
  form.addEventListener('submit', ev => { ev.preventDefault(); check(); });
  root.querySelector('#import-file').addEventListener('change', check);
  root.querySelector('#import-kind').addEventListener('change', () => { if (root.querySelector('#import-file').files[0]) check(); });
  out.addEventListener('click', async ev => {
    if (!ev.target.closest('#import-confirm') || !pending) return;
    const p = pending;
    const what = `${t('import_confirm_text')} ${p.rows} → ${t(KINDS[p.kind])} (${p.name})`;
    if (!(await window.spotcheckConfirm(what))) return;
    try {
      const r = await api.sendText('POST', `/api/v1/registry/${p.kind}`, p.text, p.type);
      pending = null;
      await reload(`<p class="ok" id="import-done" data-rows="${esc(r.rows)}">${label('import_done')} <b>${esc(r.rows)}</b> → ${label(KINDS[p.kind])} <span class="code">${esc(p.name)}</span></p>`);
    } catch (e) { pending = null; out.innerHTML = refused(e); }
  });
}
