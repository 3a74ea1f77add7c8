// A task's page: what it is (rule, limit, source), the evidence (a chart of the rule's metric
// with its limits and the violation intervals, the records that broke the rule), notes,
// remote checks and, for whoever may act, the actions: acknowledge, assign inspectors,
// resolve with a category from the API's list, publish after a confirmation, run a remote
// check, record an inspector's decision.
import { t, esc, label, code, codeLabel, time, when, bilingual } from './i18n.js';
import * as api from './api.js';
import { chart } from './chart.js';

const RANGES = [['task', 0], ['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 86400e3], ['7d', 7 * 86400e3]];

function facts(rows) {
  return `<dl class="facts">${rows.filter(r => r[1] !== '' && r[1] != null).map(([k, v]) => `<dt data-t="${k}">${esc(t(k))}</dt><dd>${v}</dd>`).join('')}</dl>`;
}

/** A record's fields as short text (its kind and id are shown beside it). */
function recordText(r) {
  return Object.entries(r || {}).filter(([k]) => !['kind', 'id'].includes(k)).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : k.endsWith('_ms') && typeof v === 'number' ? when(v) : v}`).join(' · ');
}

function categoryOptions(cats, selected) {
  return `<option value="" data-t="choose">${esc(t('choose'))}</option>` + cats.map(c => `<option value="${esc(c.code)}"${c.code === selected ? ' selected' : ''} data-code="cat:${esc(c.code)}">${esc(code('cat', c.code))}</option>`).join('');
}

export async function render(main, id, params) {
  const state = { range: params.get('range') || 'task', msg: '', msgOk: false, drafts: {} };
  let view, ev, cats, seq = 0;
  // Loads the task; an answer overtaken by a later load is dropped, so the page never goes
  // back to an older state.
  async function load() {
    const r = RANGES.find(x => x[0] === state.range);
    const q = r && r[1] ? `?since_ms=${Date.now() - r[1]}&until_ms=${Date.now() + 1}` : '';
    const mine = ++seq;
    const got = await Promise.all([api.get('/api/v1/tasks/' + id), api.get(`/api/v1/tasks/${id}/evidence${q}`), api.resultCategories()]);
    if (mine === seq) [view, ev, cats] = got;
  }
  function keepDrafts() {
    for (const el of main.querySelectorAll('[data-draft]')) state.drafts[el.dataset.draft] = el.value;
  }
  function draw() {
    keepDrafts();
    const task = view, rule = ev.rule, manages = api.manages(task);
    const me = api.session.me && api.session.me.user;
    const mineAsInspector = me && me.role === 'inspector' && task.inspectors.includes(me.inspector);
    const names = ev;
    const charts = ev.series.map(s => `<h3>${esc(s.metric)}${rule && rule.unit ? ` <span class="muted small">(${esc(rule.unit)})</span>` : ''}</h3>` + chart({
      points: s.points, x0: ev.start_ms, x1: ev.end_ms, unit: rule && rule.unit,
      limits: rule && rule.allowed ? rule.allowed : null,
      bands: ev.violations.map(v => ({ start: v.start, end: v.end, detail: v.detail })),
      title: s.metric,
    })).join('');
    // Record rules: the breaching records per time slot, with the violation intervals.
    const recordChart = rule && rule.kind === 'ratio' ? (() => {
      const slots = 48, w = (ev.end_ms - ev.start_ms) / slots, counts = new Array(slots).fill(0);
      for (const r of ev.records) { const i = Math.floor((r.ts_ms - ev.start_ms) / w); if (i >= 0 && i < slots) counts[i]++; }
      return `<h3>${label('records')}</h3>` + chart({
        points: counts.map((n, i) => ({ ts_ms: Math.round(ev.start_ms + (i + 0.5) * w), value: n })), x0: ev.start_ms, x1: ev.end_ms,
        limits: { max: 0 }, bands: ev.violations.map(v => ({ start: v.start, end: v.end, detail: v.detail })), title: rule.key,
      });
    })() : '';
    const violations = ev.violations.length ? `<h3>${label('violation')}</h3><div class="scroll"><table id="violations" class="cards"><tbody>${ev.violations.map(v => `<tr><td>${time(v.start)} – ${time(v.end)}</td><td>${esc(v.detail)}</td></tr>`).join('')}</tbody></table></div>` : '';
    const records = rule && rule.kind === 'ratio' ? `<h3>${label('records')} <span class="small muted">${label('records_in_range')}: ${ev.records_in_range}</span></h3>
      <div class="scroll"><table id="records" class="cards"><thead><tr><th data-t="time">${esc(t('time'))}</th><th data-t="record_kind">${esc(t('record_kind'))}</th><th data-t="record_id">${esc(t('record_id'))}</th><th data-t="record">${esc(t('record'))}</th></tr></thead>
      <tbody>${ev.records.map(r => `<tr class="record"><td data-h="${esc(t('time'))}">${time(r.ts_ms)}</td><td data-h="${esc(t('record_kind'))}">${esc(r.kind)}</td><td data-h="${esc(t('record_id'))}" class="code">${esc(r.id)}</td><td data-h="${esc(t('record'))}" class="code">${esc(recordText(r.record))}</td></tr>`).join('')}</tbody></table></div>
      ${ev.records.length ? '' : `<p class="muted">${label('none')}</p>`}` : '';
    const notes = view.notes.length ? `<div class="scroll"><table id="notes" class="cards"><tbody>${view.notes.map(n => `<tr><td>${time(n.ts_ms)}</td><td>${esc(n.kind)}</td><td>${esc(n.text)}</td></tr>`).join('')}</tbody></table></div>` : `<p class="muted">${label('none')}</p>`;
    const checks = view.checks.length ? `<div class="scroll"><table id="checks" class="cards"><thead><tr><th data-t="checked_at">${esc(t('checked_at'))}</th><th data-t="outcome">${esc(t('outcome'))}</th><th data-t="completeness">${esc(t('completeness'))}</th><th data-t="compliance">${esc(t('compliance'))}</th><th data-t="decision">${esc(t('decision'))}</th></tr></thead><tbody>${view.checks.map(c => `<tr class="check" data-id="${c.id}">
        <td data-h="${esc(t('checked_at'))}">${time(c.checked_ms)}</td><td data-h="${esc(t('outcome'))}">${codeLabel('outcome', c.outcome)}${c.evidence && c.evidence.reason ? `<div class="small muted">${esc(c.evidence.reason)}</div>` : ''}</td>
        <td data-h="${esc(t('completeness'))}">${c.evidence && c.evidence.completeness != null ? (c.evidence.completeness * 100).toFixed(1) + ' %' : ''}</td>
        <td data-h="${esc(t('compliance'))}">${c.evidence && c.evidence.compliance_share != null ? (c.evidence.compliance_share * 100).toFixed(1) + ' %' : ''}</td>
        <td data-h="${esc(t('decision'))}">${c.decision ? codeLabel('decision', c.decision) + ' · ' + esc(c.decided_by || '') + ' ' + time(c.decided_ms) : ''}${c.reason ? `<div class="small">${esc(c.reason)}</div>` : ''}</td></tr>`).join('')}</tbody></table></div>` : `<p class="muted">${label('none')}</p>`;
    const acts = [];
    if (manages && task.status === 'open') acts.push(`<form id="act-ack"><button class="primary" type="submit" data-t="acknowledge">${esc(t('acknowledge'))}</button></form>`);
    if (manages && task.kind !== 'anomaly' && ['drawn', 'checked'].includes(task.status))
      acts.push(`<form id="act-assign"><input id="assign-ids" data-draft="assign" data-tp="assign_hint" placeholder="${esc(t('assign_hint'))}" value="${esc(state.drafts.assign ?? task.inspectors.join(', '))}"><button type="submit" data-t="assign">${esc(t('assign'))}</button></form>`);
    if (manages && task.kind === 'anomaly' && ['open', 'acknowledged'].includes(task.status))
      acts.push(`<form id="act-resolve"><label>${label('category')} <select id="resolve-category" data-draft="category">${categoryOptions(cats, state.drafts.category)}</select></label>
        <textarea id="resolve-comment" data-draft="comment" data-tp="comment" placeholder="${esc(t('comment'))}">${esc(state.drafts.comment || '')}</textarea><button class="primary" type="submit" data-t="resolve">${esc(t('resolve'))}</button></form>`);
    if (manages && task.status === 'resolved') acts.push(`<form id="act-publish"><button class="primary" type="submit" data-t="publish">${esc(t('publish'))}</button></form>`);
    if ((manages || mineAsInspector) && task.kind !== 'anomaly' && ['drawn', 'checked'].includes(task.status)) acts.push(`<form id="act-check"><button type="submit" data-t="run_check">${esc(t('run_check'))}</button></form>`);
    const open = view.checks.filter(c => !c.decision).slice(-1)[0];
    if ((mineAsInspector || manages) && task.status === 'checked' && open && me.role !== 'auditor')
      acts.push(`<form id="act-decide" data-check="${open.id}"><label>${label('decision')} <select id="decide-kind" data-draft="decide"><option value="accept" data-t="accept"${state.drafts.decide === 'override' ? '' : ' selected'}>${esc(t('accept'))}</option><option value="override" data-t="override"${state.drafts.decide === 'override' ? ' selected' : ''}>${esc(t('override'))}</option></select></label>
        <label>${label('category')} <select id="decide-category" data-draft="decide_category">${categoryOptions(cats, state.drafts.decide_category)}</select></label>
        <textarea id="decide-text" data-draft="decide_text" data-tp="comment" placeholder="${esc(t('comment'))}">${esc(state.drafts.decide_text || '')}</textarea><button class="primary" type="submit" data-t="record_decision">${esc(t('record_decision'))}</button></form>`);
    main.innerHTML = `<section id="task" data-id="${task.id}" data-status="${task.status}">
      <p><a href="javascript:history.back()" data-t="back">${esc(t('back'))}</a></p>
      <h2>${label('task')} #${task.id} · ${codeLabel('kind', task.kind)} · <span id="task-status">${codeLabel('status', task.status)}</span> ${task.severity ? codeLabel('severity', task.severity, 'sev-' + task.severity) : ''}</h2>
      <div class="grid2"><div>${facts([
        ['entity', `${api.entityLink(task.entity, names.entity_name)} <span class="code muted">${esc(task.entity)}</span>`],
        ['item', esc(names.item_name || task.item)],
        ['department', codeLabel('dept', task.department)],
        ['rule', rule ? `${bilingual(rule.title, rule.title_zh, 'id="rule-title"')} <span class="code muted">${esc(rule.key)}</span>` : esc(task.rule || '')],
        ['limit', rule ? `<span id="rule-limit">${esc(rule.limit)}</span>` : ''],
        ['source', rule ? esc(rule.source) : ''],
        ['detail', esc(task.detail || '')],
        ['window', esc(task.window_start === task.window_end ? task.window_start : task.window_start + ' – ' + task.window_end)],
        ['opened', time(task.opened_ms)], ['cleared', time(task.cleared_ms)], ['updated', time(task.updated_ms)],
        ['inspectors', esc(task.inspectors.join(', '))],
        ['result', task.result ? codeLabel('cat', task.result) : ''], ['comment', esc(task.comment || '')],
        ['published', time(task.published_ms)],
      ])}</div>
      <div class="actions" id="actions"><h3>${label('actions')}</h3>${acts.join('') || `<p class="muted">${label(me ? 'readonly_role' : 'none')}</p>`}<div id="act-msg" class="${state.msgOk ? 'ok' : 'msg'}">${esc(state.msg)}</div></div></div>
    </section>
    <section id="evidence"><h2>${label('evidence')}</h2>
      <div class="filters"><label>${label('range')}<select id="range">${RANGES.map(([k]) => `<option value="${k}"${k === state.range ? ' selected' : ''} data-t="range_${k}">${esc(t('range_' + k))}</option>`).join('')}</select></label>
      <span class="small muted">${time(ev.start_ms)} – ${time(ev.end_ms)}</span></div>
      ${charts || recordChart || `<p class="muted">${label('no_data')}</p>`}
      ${violations}${records}
    </section>
    <section id="history"><h2>${label('notes')}</h2>${notes}</section>
    <section id="remote-checks"><h2>${label('checks')}</h2>${checks}</section>`;
    wire();
  }
  async function act(f, okText) {
    state.msg = ''; state.msgOk = false;
    try { await f(); state.msg = okText || t('done'); state.msgOk = true; state.drafts = {}; await load(); }
    catch (e) { state.msg = e.message; keepDrafts(); }
    draw();
  }
  function wire() {
    const on = (id, f) => { const el = main.querySelector('#' + id); if (el) el.addEventListener('submit', e => { e.preventDefault(); f(); }); };
    on('act-ack', () => act(() => api.post(`/api/v1/tasks/${id}/acknowledge`)));
    on('act-assign', () => act(() => api.put(`/api/v1/tasks/${id}/inspectors`, { inspectors: main.querySelector('#assign-ids').value.split(/[\s,，]+/).filter(Boolean) })));
    on('act-resolve', () => {
      const result = main.querySelector('#resolve-category').value, comment = main.querySelector('#resolve-comment').value.trim();
      if (!result) { state.msg = t('category_required'); keepDrafts(); return draw(); }
      if (!comment) { state.msg = t('comment_required'); keepDrafts(); return draw(); }
      act(() => api.post(`/api/v1/tasks/${id}/resolve`, { result, comment }));
    });
    on('act-publish', async () => {
      if (await window.spotcheckConfirm(t('confirm_publish_text'))) act(() => api.post('/api/v1/publications', { tasks: [id] }));
    });
    on('act-check', () => act(() => api.post(`/api/v1/tasks/${id}/checks`)));
    on('act-decide', () => {
      const f = main.querySelector('#act-decide'), kind = main.querySelector('#decide-kind').value;
      const result = main.querySelector('#decide-category').value, text = main.querySelector('#decide-text').value.trim();
      const body = kind === 'override' ? { decision: 'override', result, reason: text } : { decision: 'accept' };
      if (kind === 'accept') { if (result) body.result = result; if (text) body.comment = text; }
      if (kind === 'override' && !result) { state.msg = t('category_required'); keepDrafts(); return draw(); }
      if (kind === 'override' && !text) { state.msg = t('comment_required'); keepDrafts(); return draw(); }
      act(() => api.post(`/api/v1/checks/${f.dataset.check}/decision`, body));
    });
    main.querySelector('#range').onchange = async e => { state.range = e.target.value; keepDrafts(); await load(); draw(); };
  }
  await load();
  draw();
  return {
    relabel: draw,
    async onLive(kind, data) {
      if (kind === 'tasks' && data.tasks.some(x => x.id === id)) { keepDrafts(); await load(); draw(); }
    },
  };
}
export { when };
