// Read views of the rest: ingest, rule packs, annual plans and their progress, draws (the
// full records, for the admin and the auditor), the registry, joint inspections, the audit
// log. A table per list; anything nested is shown as compact JSON.
import { t, esc, label, time, code, codeLabel } from './i18n.js';
import * as api from './api.js';

const TABS = ['ingest', 'rule_packs', 'plans', 'draws', 'registry', 'joint', 'reports', 'audit'];

function cell(v) {
  if (v == null) return '';
  if (typeof v === 'number' && v > 1e12 && v < 1e14) return time(v);
  if (typeof v === 'object') return `<span class="code">${esc(JSON.stringify(v).slice(0, 300))}</span>`;
  return esc(v);
}

function table(rows, columns, id) {
  if (!rows.length) return `<p class="muted">${label('none')}</p>`;
  const cols = columns || Object.keys(rows[0]);
  return `<div class="scroll"><table class="cards"${id ? ` id="${id}"` : ''}><thead><tr>${cols.map(c => `<th>${codeLabel('col', c)}</th>`).join('')}</tr></thead><tbody>
    ${rows.map(r => `<tr>${cols.map(c => `<td data-h="${esc(code('col', c))}">${cell(r[c])}</td>`).join('')}</tr>`).join('')}</tbody></table></div>`;
}

async function section(tab) {
  switch (tab) {
    case 'ingest': {
      const [stats, agents, dead] = await Promise.all([api.get('/api/v1/stats'), api.get('/api/v1/agents'), api.get('/api/v1/dead-letters?limit=50')]);
      return `<div class="counts">${Object.entries(stats).map(([k, v]) => `<span data-stat="${esc(k)}"><span class="n">${esc(v)}</span>${esc(k.replaceAll('_', ' '))}</span>`).join('')}</div>
        <h3>${label('feeds')}</h3>${table(agents)}<h3>${label('dead_letters')}</h3>${table(dead, ['received_ms', 'topic', 'code', 'reason'])}`;
    }
    case 'rule_packs': return table(await api.get('/api/v1/rule-packs'), ['id', 'domain', 'hash', 'origin', 'rules'], 'packs');
    case 'plans': {
      const [plans, commitments] = await Promise.all([api.get('/api/v1/plans'), fetch('/api/v1/public/draw-commitments?limit=1000').then(r => r.json())]);
      const progress = await Promise.all(plans.map(p => api.get(`/api/v1/plans/${encodeURIComponent(p.id)}/progress`).catch(() => ({}))));
      const drawn = new Map(commitments.map(c => [c.parameters.draw_id, c]));
      const admin = api.role() === 'admin';
      const rows = plans.flatMap(p => p.batches.map(b => {
        const c = drawn.get(`${p.id}-${b.label}`);
        const state = !c ? '' : c.revealed_ms ? `${t('revealed')} ${time(c.revealed_ms)}` : `${t('committed')} ${time(c.committed_ms)}`;
        const act = !admin ? '' : !c ? `<button data-act="commit" data-plan="${esc(p.id)}" data-batch="${esc(b.label)}" data-t="commit">${esc(t('commit'))}</button>`
          : !c.revealed_ms ? `<button data-act="reveal" data-plan="${esc(p.id)}" data-batch="${esc(b.label)}" data-t="reveal">${esc(t('reveal'))}</button>` : '';
        return `<tr><td data-h="${esc(t('plans'))}">${esc(p.id)}</td><td>${esc(b.label)}</td><td>${esc(b.start)} – ${esc(b.end)}</td><td>${state}</td><td>${act}</td></tr>`;
      })).join('');
      return table(plans.map((p, i) => Object.assign({ id: p.id, year: p.year, department: p.department, item: p.item, ratios: p.ratios }, progress[i])), null, 'plans')
        + `<h3>${label('batches')}</h3><div class="scroll"><table class="cards" id="batches"><tbody>${rows}</tbody></table></div><p id="batch-msg" class="msg"></p>`;
    }
    case 'draws': {
      const records = await api.get('/api/v1/draws?limit=50');
      return table(records.map(r => ({ draw: r.parameters.draw_id, commitment: r.commitment, department: r.parameters.department, item: r.parameters.item, drawn: r.draws.length, replacements: (r.replacements || []).length })), null, 'draws');
    }
    case 'registry': {
      const [items, entities, inspectors] = await Promise.all([api.get('/api/v1/registry/items'), api.get('/api/v1/registry/entities'), api.get('/api/v1/registry/inspectors')]);
      return `<h3>${label('items')}</h3>${table(items)}<h3>${label('entities_lib')} (${entities.length})</h3>${table(entities.slice(0, 200), ['code', 'name', 'domain', 'district', 'risk', 'agents'])}
        <h3>${label('inspectors_lib')} (${inspectors.length})</h3>${table(inspectors, ['id', 'name', 'department', 'fields', 'active'])}`;
    }
    case 'joint': { const j = await api.get('/api/v1/joint'); return `<pre>${esc(JSON.stringify(j, null, 1).slice(0, 20000))}</pre>`; }
    case 'audit': {
      const head = await fetch('/api/v1/public/audit-head').then(r => r.json());
      const r = await fetch('/api/v1/audit', { headers: api.headers(), credentials: 'same-origin' });
      if (!r.ok) return `<p>${label('audit_head')}: #${esc(head.seq)} <span class="code">${esc(head.hash || '')}</span></p><p class="muted">${label('forbidden')}</p>`;
      const lines = (await r.text()).trim().split('\n').filter(Boolean).slice(-200).reverse().map(l => JSON.parse(l));
      return `<p>${label('audit_head')}: #${esc(head.seq)} <span class="code">${esc(head.hash || '')}</span> · <span class="muted">spotcheck-collector audit verify</span></p>${table(lines, ['seq', 'ts_ms', 'kind', 'subject', 'body'], 'audit')}`;
    }
    case 'reports': return report();
    default: return '';
  }
}

/** Today and the first day of its year, as China dates (YYYY-MM-DD). */
function thisYear() {
  const today = new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10);
  return [today.slice(0, 4) + '-01-01', today];
}

/** Bars per department: planned, drawn, checked, published (an SVG that prints). */
function bars(deps) {
  const keys = ['planned', 'drawn', 'checked', 'published'];
  const max = Math.max(1, ...deps.flatMap(d => keys.map(k => d[k] || 0)));
  const w = 14, gap = 26, h = 120, left = 4;
  const width = left + deps.length * (keys.length * w + gap);
  const body = deps.map((d, i) => {
    const x0 = left + i * (keys.length * w + gap);
    return keys.map((k, j) => {
      const v = d[k] || 0, bh = Math.round(v / max * h);
      return `<rect class="bar bar-${k}" x="${x0 + j * w}" y="${h - bh + 4}" width="${w - 2}" height="${bh}"><title>${esc(code('dept', d.department))} ${esc(t('r_' + k))}: ${v}</title></rect>`;
    }).join('') + `<text x="${x0}" y="${h + 18}" font-size="11">${esc(code('dept', d.department))}</text>`;
  }).join('');
  const legend = keys.map(k => `<span class="legend bar-${k}">■</span> <span data-t="r_${k}">${esc(t('r_' + k))}</span>`).join(' ');
  return `<svg id="report-chart" viewBox="0 0 ${width} ${h + 24}" style="max-width:100%;height:auto">${body}</svg><p class="small">${legend}</p>`;
}

/** The joint-meeting office's report for this year so far: a chart, a table, CSV, print. */
async function report() {
  const [from, to] = thisYear();
  const r = await api.get(`/api/v1/reports?from=${from}&to=${to}`);
  const rows = r.departments.map(d => ({
    department: code('dept', d.department), planned: d.planned, drawn: d.drawn, checked: d.checked,
    published: d.published, joint_share: d.joint_share == null ? '' : (d.joint_share * 100).toFixed(1) + '%',
    joint_required: d.joint_required, overdue_publications: d.overdue_publications,
    anomalies_opened: d.anomalies_opened, ack_median_min: d.time_to_acknowledge.median_min,
    ack_p90_min: d.time_to_acknowledge.p90_min, resolve_median_min: d.time_to_resolve.median_min,
    resolve_p90_min: d.time_to_resolve.p90_min,
    coverage: d.coverage == null ? '' : (d.coverage * 100).toFixed(0) + '%',
  }));
  return `<p>${esc(from)} – ${esc(to)} · <button type="button" id="report-print" onclick="window.print()" data-t="print">${esc(t('print'))}</button>
    <button type="button" id="report-csv" data-t="download_csv">${esc(t('download_csv'))}</button></p>
    ${bars(r.departments)}${table(rows, null, 'report')}`;
}

/** Downloads the report as CSV with the caller's credentials. */
async function downloadCsv() {
  const [from, to] = thisYear();
  const r = await fetch(`/api/v1/reports/csv?from=${from}&to=${to}`, { headers: api.headers(), credentials: 'same-origin' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(await r.blob());
  a.download = `spotcheck-report-${from}-${to}.csv`;
  a.click();
}

export async function render(main, parts) {
  const tab = TABS.includes(parts[0]) ? parts[0] : 'ingest';
  const body = await section(tab).catch(e => `<p class="msg">${esc(e.status === 403 ? t('forbidden') : e.message)}</p>`);
  if (!main.dataset.wired) main.dataset.wired = '1', main.addEventListener('click', async ev => {
    if (ev.target.closest('#report-csv')) { downloadCsv(); return; }
    const b = ev.target.closest('button[data-act]');
    if (!b || !['commit', 'reveal'].includes(b.dataset.act)) return;
    const what = `${t(b.dataset.act)} ${b.dataset.plan} / ${b.dataset.batch}`;
    if (!(await window.spotcheckConfirm(what + '?'))) return;
    try {
      await api.post(`/api/v1/plans/${encodeURIComponent(b.dataset.plan)}/batches/${encodeURIComponent(b.dataset.batch)}/${b.dataset.act}`);
      await render(main, parts);
    } catch (e) { main.querySelector('#batch-msg').textContent = e.message; }
  });
  main.innerHTML = `<section id="admin"><nav class="pager">${TABS.map(x => `<a href="#/admin/${x}" data-t="${x}"${x === tab ? ' class="active"' : ''}>${esc(t(x))}</a>`).join(' · ')}</nav>
    <h2>${label(tab)}</h2>${body}</section>`;
  return null;
}
