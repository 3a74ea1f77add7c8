// The audit log: whether its hash chain verifies (GET /api/v1/audit/verify, the checks of
// `spotcheck-collector audit verify`), how long it is, its last hash, where it breaks if it
// does, optionally against a head hash published earlier; then the latest entries.
import { t, esc, label, time, codeLabel } from './i18n.js';
import * as api from './api.js';
import { htmlTable, failure } from './tables.js';

/** The verification block. */
function status(v, head) {
  const ok = v.ok;
  const verdict = ok
    ? `<p class="ok" id="audit-status">✓ ${label('audit_ok')}</p>`
    : `<p class="msg" id="audit-status">✗ ${label('audit_broken')}${v.first_broken_seq != null ? ` <span id="audit-broken-at" data-seq="${esc(v.first_broken_seq)}">${label('audit_broken_from')} #${esc(v.first_broken_seq)}</span>` : ''}</p>`;
  const published = head == null ? '' : v.published_head_seq != null
    ? `<dt data-t="audit_published_head">${esc(t('audit_published_head'))}</dt><dd id="audit-published" class="ok">✓ #${esc(v.published_head_seq)} <span class="code">${esc(head)}</span></dd>`
    : `<dt data-t="audit_published_head">${esc(t('audit_published_head'))}</dt><dd id="audit-published" class="msg">✗ ${label('audit_head_missing')} <span class="code">${esc(head)}</span></dd>`;
  const problems = ok ? '' : `<h3>${label('audit_problems')} (${v.problems.length})</h3>` + htmlTable('audit-problems', ['seq', 'problem', 'message'], v.problems.map(p => [
    `class="problem" data-problem="${esc(p.problem)}"${p.at_seq != null ? ` data-seq="${esc(p.at_seq)}"` : ''}`,
    [p.at_seq != null ? esc('#' + p.at_seq) : '', codeLabel('problem', p.problem), `<span class="server-msg">${esc(p.message)}</span>`],
  ]));
  return `<section id="audit-verify" class="inner" data-ok="${ok ? 1 : 0}">${verdict}
    <dl class="facts"><dt data-t="entries">${esc(t('entries'))}</dt><dd id="audit-entries">${esc(v.entries)}</dd>
      <dt data-t="audit_head">${esc(t('audit_head'))}</dt><dd>#<span id="audit-head-seq">${esc(v.head_seq)}</span> <span class="code" id="audit-head-hash">${esc(v.head_hash)}</span></dd>
      <dt data-t="audit_verified">${esc(t('audit_verified'))}</dt><dd>${time(v.verified_ms)}</dd>${published}</dl>
    ${problems}
    <form id="audit-head-form" class="filters"><label><span data-t="audit_check_head">${esc(t('audit_check_head'))}</span>
      <input id="audit-head-input" size="40" data-tp="audit_head_hint" placeholder="${esc(t('audit_head_hint'))}" value="${esc(head || '')}"></label>
      <button type="submit" id="audit-head-check" data-t="audit_verify">${esc(t('audit_verify'))}</button></form>
    <p class="small muted"><span data-t="audit_cli">${esc(t('audit_cli'))}</span> <span class="code">spotcheck-collector audit verify --data DIR [--head HASH]</span> · docs/audit.md</p></section>`;
}

/** The audit tab's HTML (`?head=HASH` checks a published head too). */
export async function render(params) {
  const head = (params.get('head') || '').trim() || null;
  const pub = await fetch('/api/v1/public/audit-head').then(r => r.json());
  const r = await fetch('/api/v1/audit', { headers: api.headers(), credentials: 'same-origin' });
  if (r.status === 401 || r.status === 403) return `<p>${label('audit_head')}: #${esc(pub.seq)} <span class="code">${esc(pub.hash || '')}</span></p><p class="muted">${label('forbidden')}</p>`;
  let verify, bad = new Set();
  try {
    const v = await api.get('/api/v1/audit/verify' + (head ? `?head=${encodeURIComponent(head)}` : ''));
    verify = status(v, head);
    bad = new Set(v.problems.map(p => p.at_seq).filter(s => s != null));
  } catch (e) {
    verify = `<section id="audit-verify" class="inner">${failure('audit_verify_failed', e, 'audit-error')}</section>`;
  }
  let log;
  if (r.ok) {
    const entries = (await r.text()).trim().split('\n').filter(Boolean).slice(-200).reverse().map(l => JSON.parse(l));
    log = htmlTable('audit', ['seq', 'ts_ms', 'kind', 'subject', 'body'], entries.map(e => [
      `class="entry${bad.has(e.seq) ? ' broken' : ''}" data-seq="${esc(e.seq)}"`,
      [esc(e.seq), time(e.ts_ms), `${codeLabel('auditkind', e.kind)} <div class="code small muted">${esc(e.kind)}</div>`, `<span class="code">${esc(e.subject)}</span>`, `<span class="code small">${esc(e.body.slice(0, 400))}</span>`],
    ]));
  } else {
    // The export refuses a log with rows it cannot render faithfully; the verification above says which.
    const j = await r.json().catch(() => null);
    log = `<p class="msg" id="audit-log-error">${label('load_failed')}: <span class="server-msg">${esc((j && j.error && j.error.message) || r.status)}</span></p>`;
  }
  return `${verify}<h3>${label('audit_latest')}</h3>${log}`;
}

/** Wires the head form: the hash goes into the URL. */
export function wire(root, reload) {
  const f = root.querySelector('#audit-head-form');
  if (!f) return;
  f.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = root.querySelector('#audit-head-input').value.trim();
    const h = '#/admin/audit' + (v ? `?head=${encodeURIComponent(v)}` : '');
    if (h === location.hash) reload(''); else location.hash = h;
  });
}
