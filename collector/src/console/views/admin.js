// The administration pages: ingest, rule packs, annual plans and their progress (commit and
// reveal), draws (the full records, for the admin and the auditor), the registry with its
// import (registry.js), joint inspections (joint.js), the report, the audit log with its
// verification (audit.js). A table per list.
import { t, esc, label, time, code, codeLabel, bilingual } from './i18n.js';
import * as api from './api.js';
import { table, htmlTable } from './tables.js';
import * as registry from './registry.js';
import * as joint from './joint.js';
import * as audit from './audit.js';

const TABS = ['ingest', 'rule_packs', 'plans', 'draws', 'registry', 'joint', 'reports', 'audit'];

async function section(tab, params) {
  switch (tab) {
    case 'ingest': {
      const [stats, agents, dead] = await Promise.all([api.get('/api/v1/stats'), api.get('/api/v1/agents'), api.get('/api/v1/dead-letters?limit=50')]);
      return `<div class="counts">${Object.entries(stats).map(([k, v]) => `<span data-stat="${esc(k)}"><span class="n">${esc(v)}</span>${codeLabel('stat', k)}</span>`).join('')}</div>
        <h3>${label('feeds')}</h3>${table(agents)}<h3>${label('dead_letters')}</h3>${table(dead, ['received_ms', 'topic', 'code', 'reason'])}`;
    }
    case 'rule_packs': return htmlTable('packs', ['id', 'title', 'domain', 'hash', 'origin', 'rules'], (await api.get('/api/v1/rule-packs')).map(p => ['',
      [esc(p.id), bilingual(p.title, p.title_zh), codeLabel('domain', p.domain), `<span class="code">${esc(p.hash)}</span>`, esc(p.origin), esc(p.rules)]]));
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
      // Ratios in per cent and each risk class's drawn / planned, instead of their JSON.
      const pct = bp => `${bp / 100}%`;
      const planRows = plans.map((p, i) => {
        const g = progress[i] || {};
        return ['', [esc(p.id), esc(p.year), codeLabel('dept', p.department), esc(p.item),
          p.ratios.map(r => `<div class="nowrap">${esc(r.class)} ${pct(r.ratio_bp)} <span class="small muted">(${pct(r.min_bp)}–${pct(r.max_bp)})</span></div>`).join(''),
          esc(g.planned ?? ''), esc(g.drawn ?? ''), esc(g.checked ?? ''), esc(g.published ?? ''), g.batches == null ? '' : `${esc(g.batches_drawn)} / ${esc(g.batches)}`,
          (g.classes || []).map(c => `<div class="nowrap">${esc(c.class)}: ${esc(c.drawn)} / ${esc(c.planned)} <span class="small muted">(${esc(c.population)})</span></div>`).join('')]];
      });
      return htmlTable('plans', ['id', 'year', 'department', 'item', 'ratios', 'planned', 'drawn', 'checked', 'published', 'batches_drawn', 'classes'], planRows)
        + `<h3>${label('batches')}</h3><div class="scroll"><table class="cards" id="batches"><tbody>${rows}</tbody></table></div><p id="batch-msg" class="msg"></p>`;
    }
    case 'draws': {
      const records = await api.get('/api/v1/draws?limit=50');
      return table(records.map(r => ({ draw: r.parameters.draw_id, commitment: r.commitment, department: r.parameters.department, item: r.parameters.item, drawn: r.draws.length, replacements: (r.replacements || []).length })), null, 'draws');
    }
    case 'registry': return registry.render();
    case 'joint': return joint.render(params);
    case 'audit': return audit.render(params);
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

const WIRES = { registry, joint, audit };

export async function render(main, parts, params = new URLSearchParams(), flash = '') {
  // The full draw records are for the admin and the auditor only.
  const tabs = api.role() === 'supervisor' ? TABS.filter(x => x !== 'draws') : TABS;
  const tab = tabs.includes(parts[0]) ? parts[0] : 'ingest';
  const body = await section(tab, params).catch(e => `<p class="msg" id="admin-error">${label(e.status === 403 ? 'forbidden' : 'load_failed')}${e.status === 403 ? '' : ': ' + esc(e.message)}</p>`);
  if (!main.dataset.wired) main.dataset.wired = '1', main.addEventListener('click', async ev => {
    if (ev.target.closest('#report-csv')) { downloadCsv(); return; }
    const b = ev.target.closest('button[data-act]');
    if (!b || !['commit', 'reveal'].includes(b.dataset.act)) return;
    const what = `${t(b.dataset.act)} ${b.dataset.plan} / ${b.dataset.batch}`;
    if (!(await window.spotcheckConfirm(what + '?'))) return;
    try {
      await api.post(`/api/v1/plans/${encodeURIComponent(b.dataset.plan)}/batches/${encodeURIComponent(b.dataset.batch)}/${b.dataset.act}`);
      await render(main, parts, params);
    } catch (e) { main.querySelector('#batch-msg').innerHTML = `${label('action_failed')}: ${esc(e.message)}`; }
  });
  main.innerHTML = `<section id="admin" data-tab="${tab}"><nav class="pager">${tabs.map(x => `<a href="#/admin/${x}" data-t="${x}"${x === tab ? ' class="active"' : ''}>${esc(t(x))}</a>`).join(' · ')}</nav>
    <h2>${label(tab)}</h2><div id="admin-flash">${flash}</div>${body}</section>`;
  const w = WIRES[tab];
  if (w && w.wire) w.wire(main, f => render(main, parts, params, f));
  // A language switch re-renders the page, except the registry's, whose labels all carry
  // data-t (already switched): an import's report stays on screen.
  return { relabel: () => (tab === 'registry' ? null : render(main, parts, params)) };
}
