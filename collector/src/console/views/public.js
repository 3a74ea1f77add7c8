// Pages for everyone, without a login: published results (search by company name or credit
// code, CSV download) and draws (commitments; when disclosed, the record and how to verify
// it step by step).
import { t, esc, label, code, codeLabel, time } from './i18n.js';

async function json(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(path + ': ' + r.status);
  return r.json();
}

const PAGE = 50;

async function results(main, params) {
  const q = params.get('q') || '', offset = Number(params.get('offset') || 0);
  const qs = new URLSearchParams({ q, offset: String(offset), limit: String(PAGE) });
  const page = await json('/api/v1/public/results/search?' + qs);
  const csv = '/api/v1/public/results/search?' + new URLSearchParams({ q, format: 'csv' });
  main.innerHTML = `<section id="public-results"><h2>${label('nav_results')}</h2>
    <form class="filters" id="search"><label>${label('search')}<input id="q" name="q" value="${esc(q)}" data-tp="search_hint" placeholder="${esc(t('search_hint'))}"></label>
      <button type="submit" class="primary" data-t="search">${esc(t('search'))}</button>
      <a id="csv" href="${esc(csv)}" download data-t="download_csv">${esc(t('download_csv'))}</a></form>
    <div class="scroll"><table id="results" class="cards"><thead><tr><th data-t="company">${esc(t('company'))}</th><th data-t="credit_code">${esc(t('credit_code'))}</th><th data-t="item">${esc(t('item'))}</th><th data-t="result">${esc(t('result'))}</th><th data-t="published">${esc(t('published'))}</th></tr></thead><tbody>
    ${page.results.map(r => `<tr class="result" data-task="${r.task_id}"><td data-h="${esc(t('company'))}">${esc(r.entity_name || r.entity_code)}</td><td class="code" data-h="${esc(t('credit_code'))}">${esc(r.entity_code)}</td>
      <td data-h="${esc(t('item'))}">${esc(r.item_name || r.item)}</td><td data-h="${esc(t('result'))}" data-code="cat:${esc(r.result_code)}">${esc(code('cat', r.result_code))}</td><td data-h="${esc(t('published'))}">${esc(r.published_date)}</td></tr>`).join('')}
    </tbody></table></div>${page.results.length ? '' : `<p class="muted">${label('no_results')}</p>`}
    <div class="pager"><a href="#/public/results?${new URLSearchParams({ q, offset: String(Math.max(0, offset - PAGE)) })}" class="${offset > 0 ? '' : 'hidden'}" data-t="prev">${esc(t('prev'))}</a>
      <span>${offset + (page.total ? 1 : 0)}–${offset + page.results.length} / ${page.total}</span>
      <a href="#/public/results?${new URLSearchParams({ q, offset: String(offset + PAGE) })}" class="${offset + PAGE < page.total ? '' : 'hidden'}" data-t="next">${esc(t('next'))}</a></div></section>`;
  main.querySelector('#search').addEventListener('submit', ev => {
    ev.preventDefault();
    location.hash = '#/public/results?' + new URLSearchParams({ q: main.querySelector('#q').value.trim() });
  });
}

async function draws(main) {
  const [commitments, records] = await Promise.all([json('/api/v1/public/draw-commitments?limit=200'), json('/api/v1/public/draws?limit=200')]);
  const disclosed = new Map(records.map(r => [r.parameters.draw_id, r]));
  main.innerHTML = `<section id="public-draws"><h2>${label('draws')}</h2><div class="scroll"><table class="cards"><thead><tr><th data-t="draw_record">${esc(t('draw_record'))}</th><th data-t="department">${esc(t('department'))}</th><th data-t="commitment">${esc(t('commitment'))}</th><th data-t="committed">${esc(t('committed'))}</th><th data-t="drawn">${esc(t('drawn'))}</th></tr></thead><tbody>
    ${commitments.map(c => { const id = c.parameters.draw_id, r = disclosed.get(id); return `<tr class="draw"><td data-h="${esc(t('draw_record'))}"><a href="#/public/draw/${encodeURIComponent(id)}">${esc(id)}</a></td>
      <td data-h="${esc(t('department'))}">${codeLabel('dept', c.parameters.department)} · ${esc(c.parameters.item)}</td><td class="code" data-h="${esc(t('commitment'))}">${esc(c.commitment)}</td>
      <td data-h="${esc(t('committed'))}">${time(c.committed_ms)}</td><td data-h="${esc(t('drawn'))}">${r ? r.draws.length : `<span class="muted small" data-t="not_disclosed">${esc(t('not_disclosed'))}</span>${c.window_end ? ' (' + esc(c.window_end) + ')' : ''}`}</td></tr>`; }).join('')}
    </tbody></table></div></section>`;
}

function hex(bytes) { return [...new Uint8Array(bytes)].map(b => b.toString(16).padStart(2, '0')).join(''); }
function unhex(s) { return new Uint8Array((s.match(/../g) || []).map(h => parseInt(h, 16))); }

async function draw(main, id) {
  const [commitments, records] = await Promise.all([json('/api/v1/public/draw-commitments?limit=1000'), json('/api/v1/public/draws?limit=1000')]);
  const c = commitments.find(x => x.parameters.draw_id === id), r = records.find(x => x.parameters.draw_id === id);
  if (!c) { main.innerHTML = `<section class="msg">${esc(id)}: ${esc(t('no_results'))}</section>`; return; }
  let check = '';
  if (r && crypto.subtle) {
    const digest = hex(await crypto.subtle.digest('SHA-256', unhex(r.seed)));
    check = digest === c.commitment ? `<span class="ok" id="verify-commitment" data-ok="1">✔ ${label('verify_ok')}</span>` : `<span class="msg" id="verify-commitment" data-ok="0">✘ ${label('verify_bad')}</span>`;
  }
  const blob = r ? URL.createObjectURL(new Blob([JSON.stringify(r, null, 2)], { type: 'application/json' })) : '';
  const origin = location.origin;
  main.innerHTML = `<section id="public-draw"><p><a href="#/public/draws" data-t="draws">${esc(t('draws'))}</a></p>
    <h2>${label('draw_record')} ${esc(id)}</h2>
    <dl class="facts"><dt data-t="department">${esc(t('department'))}</dt><dd>${codeLabel('dept', c.parameters.department)}</dd>
      <dt data-t="item">${esc(t('item'))}</dt><dd>${esc(c.parameters.item)}</dd>
      <dt data-t="commitment">${esc(t('commitment'))}</dt><dd class="code">${esc(c.commitment)}</dd>
      <dt data-t="committed">${esc(t('committed'))}</dt><dd>${time(c.committed_ms)}</dd>
      <dt data-t="revealed">${esc(t('revealed'))}</dt><dd>${time(c.revealed_ms)}</dd>
      <dt data-t="disclosed_after">${esc(t('disclosed_after'))}</dt><dd>${esc(c.window_end || '')}</dd></dl>
    ${r ? `<h3>${label('drawn')} (${r.draws.length})</h3><div class="scroll"><table id="drawn" class="cards"><thead><tr><th data-t="credit_code">${esc(t('credit_code'))}</th><th data-t="risk">${esc(t('risk'))}</th><th data-t="inspectors">${esc(t('inspectors'))}</th></tr></thead><tbody>
      ${r.draws.map(d => `<tr><td class="code">${esc(d.entity)}</td><td>${esc(d.class)}</td><td>${esc(d.inspectors.join(', '))}</td></tr>`).join('')}</tbody></table></div>
      <h3>${label('verify_title')}</h3><ol class="steps" id="verify-steps">
        <li>${label('verify_1')}<pre>SHA-256(${esc(r.seed)})\n= ${esc(c.commitment)}</pre>${check}</li>
        <li>${label('verify_2')} <a id="record-json" href="${blob}" download="${esc(id)}.json">${esc(id)}.json</a></li>
        <li>${label('verify_3')}<pre>spotcheck-collector draw verify ${esc(id)}.json --commitments ${esc(origin)}/api/v1/public/draw-commitments</pre></li>
        <li>${label('verify_4')}<pre>curl -o commitments.json ${esc(origin)}/api/v1/public/draw-commitments
python3 docs/draw_reference.py ${esc(id)}.json --commitments commitments.json</pre></li>
        <li>${label('verify_5')}</li></ol>`
      : `<p class="muted">${label('not_disclosed')}</p>`}</section>`;
}

export async function render(main, parts, params) {
  if (parts[0] === 'draws') await draws(main);
  else if (parts[0] === 'draw') await draw(main, parts[1]);
  else await results(main, params);
  return null;
}
