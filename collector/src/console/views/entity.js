// Entities: the list of reporting entities, and one entity's page for every domain: its
// feeds with their last-seen time, numeric metrics as charts with a time-range picker, event
// records as tables with the rules each broke, its tasks and its published results.
import { t, esc, label, code, codeLabel, time, when, bilingual } from './i18n.js';
import * as api from './api.js';
import { chart } from './chart.js';
import { cells } from './queue.js';

const RANGES = [['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 86400e3], ['7d', 7 * 86400e3]];

export async function renderList(main) {
  const [ents, reg] = await Promise.all([api.get('/api/v1/entities'), api.get('/api/v1/registry/entities').catch(() => [])]);
  const names = new Map(reg.map(e => [e.code, e.name]));
  main.innerHTML = `<section id="entities"><h2>${label('nav_entities')}</h2><div class="scroll"><table class="cards"><thead><tr><th data-t="entity">${esc(t('entity'))}</th><th data-t="domain">${esc(t('domain'))}</th><th data-t="feeds">${esc(t('feeds'))}</th><th data-t="metrics">${esc(t('metrics'))}</th></tr></thead><tbody>
    ${ents.map(e => `<tr class="entity" data-id="${esc(e.id)}"><td data-h="${esc(t('entity'))}"><a href="#/entity/${encodeURIComponent(e.id)}">${esc(names.get(e.id) || e.id)}</a><div class="code muted">${esc(e.id)}</div></td>
      <td data-h="${esc(t('domain'))}">${codeLabel('domain', e.domain)}</td><td data-h="${esc(t('feeds'))}" class="code">${esc(e.agents.join(', '))}</td>
      <td data-h="${esc(t('metrics'))}">${e.latest.map(l => `${esc(l.metric)} ${l.value.toFixed(2)} ${esc(l.unit)}`).join(', ') || `<span class="muted" data-t="events">${esc(t('events'))}</span>`}</td></tr>`).join('')}
    </tbody></table></div></section>`;
  return null;
}

function recordText(r) {
  return Object.entries(r || {}).filter(([k]) => !['kind', 'id'].includes(k)).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : k.endsWith('_ms') && typeof v === 'number' ? when(v) : v}`).join(' · ');
}

export async function render(main, id, params) {
  const state = { range: params.get('range') || '6h', breaches: params.get('breaches') === '1' };
  let o, series, events, tasks, results, rules, seq = 0;
  // Loads the entity; an answer overtaken by a later load is dropped.
  async function load() {
    const span = RANGES.find(r => r[0] === state.range)[1], since = Date.now() - span;
    const mine = ++seq;
    const ov = await api.get('/api/v1/entities/' + encodeURIComponent(id));
    const got = await Promise.all([
      Promise.all(ov.metrics.map(m => api.get(`/api/v1/entities/${encodeURIComponent(id)}/series?metric=${encodeURIComponent(m.metric)}&since_ms=${since}`).then(v => ({ m, p: v.points })))),
      Promise.all(ov.events.map(e => api.get(`/api/v1/entities/${encodeURIComponent(id)}/events?kind=${encodeURIComponent(e.kind)}&since_ms=${since}&limit=50${state.breaches ? '&breaches=true' : ''}`).then(rows => ({ e, rows })))),
      api.get(`/api/v1/queue?entity=${encodeURIComponent(id)}&limit=50`),
      fetch(`/api/v1/public/results?entity=${encodeURIComponent(id)}&limit=50`).then(r => r.json()).catch(() => []),
    ]);
    if (mine !== seq) return;
    o = ov;
    [series, events, tasks, results] = got;
    rules = new Map(tasks.tasks.filter(x => x.rule && x.rule_title).map(x => [x.rule, [x.rule_title, x.rule_title_zh]]));
    state.since = since;
  }
  function draw() {
    const reg = o.registry;
    main.innerHTML = `<section id="entity" data-id="${esc(id)}">
      <p><a href="#/entities" data-t="nav_entities">${esc(t('nav_entities'))}</a></p>
      <h2>${esc(reg ? reg.name : id)} <span class="code muted">${esc(id)}</span></h2>
      <dl class="facts"><dt data-t="domain">${esc(t('domain'))}</dt><dd>${codeLabel('domain', o.domain)}</dd>
      ${reg ? `<dt data-t="district">${esc(t('district'))}</dt><dd>${esc(reg.district)}</dd><dt data-t="address">${esc(t('address'))}</dt><dd>${esc(reg.address)}</dd><dt data-t="risk">${esc(t('risk'))}</dt><dd>${esc(reg.risk)}</dd>` : ''}</dl>
      <h3>${label('feeds')}</h3><div class="scroll"><table id="feeds" class="cards"><thead><tr><th data-t="agent">${esc(t('agent'))}</th><th data-t="last_seen">${esc(t('last_seen'))}</th></tr></thead><tbody>
      ${o.feeds.map(f => `<tr><td class="code" data-h="${esc(t('agent'))}">${esc(f.agent)}</td><td data-h="${esc(t('last_seen'))}">${time(f.last_seen_ms)} <span class="muted small">${esc(f.last_stream || '')}</span></td></tr>`).join('')}</tbody></table></div>
      <div class="filters"><label>${label('range')}<select id="range">${RANGES.map(([k]) => `<option value="${k}"${k === state.range ? ' selected' : ''} data-t="range_${k}">${esc(t('range_' + k))}</option>`).join('')}</select></label>
      ${o.events.length ? `<label><span><input type="checkbox" id="only-breaches"${state.breaches ? ' checked' : ''}> ${label('only_breaches')}</span></label>` : ''}</div>
    </section>
    ${series.length ? `<section id="metrics"><h2>${label('metrics')}</h2>${series.map(({ m, p }) => `<h3>${esc(m.metric)} <span class="muted small">${m.value.toFixed(2)} ${esc(m.unit)} · ${time(m.ts_ms)}</span></h3>` + chart({
      points: p, x0: state.since, x1: Date.now(), unit: m.unit, title: m.metric,
      bands: tasks.tasks.filter(x => x.opened_ms && (x.rule || '').endsWith(m.metric)).map(x => ({ start: x.opened_ms, end: x.cleared_ms || Date.now(), detail: x.detail })),
    })).join('')}</section>` : ''}
    ${events.length ? `<section id="event-feeds"><h2>${label('events')}</h2>${events.map(({ e, rows }) => `<h3>${esc(e.kind)} <span class="muted small">${label('last_seen')} ${time(e.last_ms)}</span></h3>
      <div class="scroll"><table class="events cards" data-kind="${esc(e.kind)}"><thead><tr><th data-t="time">${esc(t('time'))}</th><th data-t="record_id">${esc(t('record_id'))}</th><th data-t="record">${esc(t('record'))}</th><th data-t="breaches">${esc(t('breaches'))}</th></tr></thead><tbody>
      ${rows.map(r => `<tr class="event${r.breaches.length ? ' breach' : ''}"><td data-h="${esc(t('time'))}">${time(r.ts_ms)}</td><td class="code" data-h="${esc(t('record_id'))}">${esc(r.id)}</td><td class="code" data-h="${esc(t('record'))}">${esc(recordText(r.record))}</td>
        <td data-h="${esc(t('breaches'))}">${r.breaches.map(b => `<div class="sev-high small">${rules.has(b) ? bilingual(...rules.get(b)) : esc(b)}</div>`).join('')}</td></tr>`).join('')}</tbody></table></div>
      ${rows.length ? '' : `<p class="muted">${label('none')}</p>`}`).join('')}</section>` : ''}
    <section id="entity-tasks"><h2>${label('tasks')} <span class="muted small">${label('total')} ${tasks.total}</span></h2>
      <div class="scroll"><table class="cards" id="tasks"><tbody>${tasks.tasks.map(x => `<tr class="task" data-id="${x.id}">${cells(x, false)}</tr>`).join('')}</tbody></table></div>
      ${tasks.tasks.length ? '' : `<p class="muted">${label('none')}</p>`}</section>
    <section id="entity-results"><h2>${label('results')}</h2><div class="scroll"><table class="cards"><tbody>
      ${results.map(r => `<tr class="result"><td>${esc(r.item_name || r.item)}</td><td>${esc(code('cat', r.result_code))}</td><td>${esc(r.published_date)}</td></tr>`).join('')}</tbody></table></div>
      ${results.length ? '' : `<p class="muted">${label('none')}</p>`}</section>`;
    main.querySelector('#range').onchange = async e => { state.range = e.target.value; await load(); draw(); };
    const ob = main.querySelector('#only-breaches');
    if (ob) ob.onchange = async e => { state.breaches = e.target.checked; await load(); draw(); };
    main.querySelector('#entity-tasks tbody').addEventListener('click', ev => {
      if (ev.target.closest('a, button')) return;
      const tr = ev.target.closest('tr.task');
      if (tr) location.hash = '#/task/' + tr.dataset.id;
    });
  }
  await load();
  draw();
  return {
    relabel: draw,
    async onLive(kind, data) {
      if (kind === 'tasks' && data.tasks.some(x => x.entity === id)) { await load(); draw(); }
    },
  };
}
