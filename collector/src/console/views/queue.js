// The task queue: filters kept in the URL, server-side sorting and paging, counts of open
// critical and high tasks, bulk acknowledgement, and rows that stay where they are when the
// live stream reports a change (a changed row is updated in place; anything else only lights
// a banner, so nothing moves under the cursor).
import { t, esc, label, code, codeLabel, time, bilingual } from './i18n.js';
import * as api from './api.js';

const KINDS = ['anomaly', 'random', 'joint', 'referral'];
const STATUSES = ['open', 'acknowledged', 'drawn', 'checked', 'resolved', 'published'];
const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const DEPTS = ['health', 'culture', 'market'];
const SORTS = ['newest', 'oldest', 'severity', 'updated', 'entity', 'status'];
const FIELDS = ['kind', 'status', 'severity', 'department', 'item', 'entity', 'since', 'until', 'sort'];
const PAGE = 50;

function select(name, values, group, current) {
  const opts = values.map(v => `<option value="${v}"${v === current ? ' selected' : ''} ${group === 'sort' ? `data-t="sort_${v}"` : `data-code="${group}:${v}"`}>${esc(group === 'sort' ? t('sort_' + v) : code(group, v))}</option>`).join('');
  return `<select name="${name}" id="f-${name}"><option value="" data-t="all">${esc(t('all'))}</option>${opts}</select>`;
}

function actions(task) {
  if (!api.manages(task)) return '';
  if (task.status === 'open') return `<button data-act="ack" data-id="${task.id}" data-t="acknowledge">${esc(t('acknowledge'))}</button>`;
  return '';
}

/** One row's cells. */
export function cells(task, selectable) {
  // A rule by its title in the current language (the switch re-renders it), else by its key.
  const rule = task.rule_title ? bilingual(task.rule_title, task.rule_title_zh) : esc(task.rule || '');
  return `${selectable ? `<td><input type="checkbox" class="pick" data-id="${task.id}"${task.status === 'open' ? '' : ' disabled'} aria-label="#${task.id}"></td>` : ''}
    <td data-h="${esc(t('id'))}">${task.id}</td>
    <td data-h="${esc(t('kind'))}">${codeLabel('kind', task.kind)}</td>
    <td data-h="${esc(t('status'))}" class="status">${codeLabel('status', task.status)}${task.cleared_ms ? ` <span class="muted small" data-t="cleared">${esc(t('cleared'))}</span>` : ''}</td>
    <td data-h="${esc(t('severity'))}">${task.severity ? codeLabel('severity', task.severity, 'sev-' + task.severity) : ''}</td>
    <td data-h="${esc(t('entity'))}">${api.entityLink(task.entity, task.entity_name)}<div class="code muted">${esc(task.entity)}</div></td>
    <td data-h="${esc(t('item'))}">${esc(task.item_name || task.item)}${rule ? `<div class="small muted rule">${rule}</div>` : ''}</td>
    <td data-h="${esc(t('opened'))}">${time(task.opened_ms) || esc(task.window_start)}</td>
    <td data-h="${esc(t('actions'))}">${actions(task)}</td>`;
}

function paramsFor(params, mine) {
  const q = new URLSearchParams();
  for (const f of FIELDS) if (params.get(f)) q.set(f, params.get(f));
  q.set('offset', params.get('offset') || '0');
  q.set('limit', String(PAGE));
  if (mine) q.delete('department');
  return q;
}

export async function render(main, params, { mine }) {
  const q = paramsFor(params, mine);
  const [page, items] = await Promise.all([
    api.get('/api/v1/queue?' + q),
    mine ? Promise.resolve([]) : api.get('/api/v1/registry/items').catch(() => []),
  ]);
  const selectable = !mine && api.manages(null);
  const known = new Map(page.tasks.map(task => [task.id, task]));
  const offset = page.offset, total = page.total;
  const c = page.counts;
  const base = mine ? '#/mine' : '#/queue';
  main.innerHTML = `<section id="queue">
    <h2>${label(mine ? 'nav_mine' : 'nav_queue')}${mine ? ` <span class="small muted">${label('my_tasks_hint')}</span>` : ''}</h2>
    <div class="counts">
      <a class="crit" href="${base}?status=open&severity=critical"><span class="n" id="count-open_critical">${c.open_critical}</span>${label('open_critical')}</a>
      <a href="${base}?status=open&severity=high"><span class="n" id="count-open_high">${c.open_high}</span>${label('open_high')}</a>
      <a href="${base}?status=open"><span class="n" id="count-open">${c.open}</span>${label('open_all')}</a>
      <a href="${base}?status=acknowledged"><span class="n" id="count-acknowledged">${c.acknowledged}</span>${label('acknowledged_n')}</a>
    </div>
    <form class="filters" id="filters">
      <label>${label('kind')}${select('kind', KINDS, 'kind', params.get('kind'))}</label>
      <label>${label('status')}${select('status', STATUSES, 'status', params.get('status'))}</label>
      <label>${label('severity')}${select('severity', SEVERITIES, 'severity', params.get('severity'))}</label>
      ${mine ? '' : `<label>${label('department')}${select('department', DEPTS, 'dept', params.get('department'))}</label>`}
      ${items.length ? `<label>${label('item')}<select name="item" id="f-item"><option value="" data-t="all">${esc(t('all'))}</option>${items.map(i => `<option value="${esc(i.id)}"${i.id === params.get('item') ? ' selected' : ''}>${esc(i.name)}</option>`).join('')}</select></label>` : ''}
      <label>${label('entity')}<input name="entity" id="f-entity" value="${esc(params.get('entity') || '')}" data-tp="search_hint" placeholder="${esc(t('search_hint'))}"></label>
      <label>${label('date_from')}<input type="date" name="since" id="f-since" value="${esc(params.get('since') || '')}"></label>
      <label>${label('date_to')}<input type="date" name="until" id="f-until" value="${esc(params.get('until') || '')}"></label>
      <label>${label('sort')}${select('sort', SORTS, 'sort', params.get('sort'))}</label>
      <button type="submit" class="primary" id="f-apply" data-t="apply">${esc(t('apply'))}</button>
      <a href="${base}" data-t="reset">${esc(t('reset'))}</a>
    </form>
    <div id="changes" class="banner hidden"></div>
    ${selectable ? `<div class="pager"><label><input type="checkbox" id="pick-all"> ${label('select_all')}</label><button type="button" id="bulk-ack" disabled data-t="bulk_ack">${esc(t('bulk_ack'))}</button><span id="bulk-msg" class="small"></span></div>` : ''}
    <div class="scroll"><table id="tasks" class="cards"><thead><tr>${selectable ? '<th></th>' : ''}<th data-t="id">${esc(t('id'))}</th><th data-t="kind">${esc(t('kind'))}</th><th data-t="status">${esc(t('status'))}</th><th data-t="severity">${esc(t('severity'))}</th><th data-t="entity">${esc(t('entity'))}</th><th data-t="item">${esc(t('item'))}</th><th data-t="opened">${esc(t('opened'))}</th><th data-t="actions">${esc(t('actions'))}</th></tr></thead>
    <tbody>${page.tasks.map(task => `<tr class="task" data-id="${task.id}">${cells(task, selectable)}</tr>`).join('')}</tbody></table></div>
    ${page.tasks.length ? '' : `<p class="muted">${label('no_tasks')}</p>`}
    <div class="pager"><button type="button" id="prev"${offset > 0 ? '' : ' disabled'} data-t="prev">${esc(t('prev'))}</button>
      <span id="page-info">${offset + (total ? 1 : 0)}–${offset + page.tasks.length} / <span id="total">${total}</span></span>
      <button type="button" id="next"${offset + PAGE < total ? '' : ' disabled'} data-t="next">${esc(t('next'))}</button></div>
  </section>`;
  // For measurements (BENCHMARKS.md): when the first page of the queue was on screen.
  if (!performance.getEntriesByName('queue-filled').length) performance.mark('queue-filled');
  const go = over => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(over)) { if (v === '' || v == null) p.delete(k); else p.set(k, v); }
    location.hash = base + '?' + p;
  };
  main.querySelector('#filters').addEventListener('submit', ev => {
    ev.preventDefault();
    const f = new FormData(ev.target), over = { offset: '' };
    for (const k of FIELDS) over[k] = (f.get(k) || '').toString().trim();
    go(over);
  });
  main.querySelector('#prev').onclick = () => go({ offset: Math.max(0, offset - PAGE) || '' });
  main.querySelector('#next').onclick = () => go({ offset: offset + PAGE });
  const tbody = main.querySelector('#tasks tbody');
  tbody.addEventListener('click', async ev => {
    const b = ev.target.closest('button[data-act]');
    if (b) {
      ev.stopPropagation();
      b.disabled = true;
      try { await api.post(`/api/v1/tasks/${b.dataset.id}/acknowledge`); await refreshRows([Number(b.dataset.id)]); } catch (e) { b.disabled = false; alertRow(b, e); }
      return;
    }
    if (ev.target.closest('a, input')) return;
    const tr = ev.target.closest('tr.task');
    if (tr) location.hash = '#/task/' + tr.dataset.id;
  });
  const picks = () => [...main.querySelectorAll('input.pick:checked')].map(i => Number(i.dataset.id));
  if (selectable) {
    const bulk = main.querySelector('#bulk-ack');
    main.addEventListener('change', ev => {
      if (ev.target.id === 'pick-all') for (const i of main.querySelectorAll('input.pick:not(:disabled)')) i.checked = ev.target.checked;
      bulk.disabled = picks().length === 0;
    });
    bulk.onclick = async () => {
      const ids = picks(); bulk.disabled = true;
      let ok = 0; const failed = [];
      for (const id of ids) { try { await api.post(`/api/v1/tasks/${id}/acknowledge`); ok++; } catch (e) { failed.push(`#${id}: ${e.message}`); } }
      main.querySelector('#bulk-msg').textContent = `${t('done')}: ${ok}` + (failed.length ? ' · ' + failed.join('; ') : '');
      await refreshRows(ids);
    };
  }
  function alertRow(el, e) { const s = document.createElement('div'); s.className = 'msg small'; s.textContent = e.message; el.after(s); }
  function update(task) {
    const tr = tbody.querySelector(`tr.task[data-id="${task.id}"]`);
    if (!tr) return false;
    task = Object.assign({}, known.get(task.id), task);
    known.set(task.id, task);
    const checked = tr.querySelector('input.pick:checked');
    tr.innerHTML = cells(task, selectable);
    if (checked && task.status === 'open') tr.querySelector('input.pick').checked = true;
    tr.classList.add('changed');
    return true;
  }
  async function refreshRows(ids) {
    // Only the rows acted on: one small read each, no list re-read.
    for (const id of ids) { try { update(await api.get('/api/v1/tasks/' + id)); } catch (_) { /* gone */ } }
  }
  let unseen = 0;
  return {
    onLive(ev, data) {
      if (ev === 'counts') for (const [k, v] of Object.entries(data)) { const el = main.querySelector('#count-' + k); if (el) el.textContent = v; }
      if (ev === 'tasks') {
        for (const task of data.tasks) if (!update(task)) unseen++;
        if (unseen || data.more) {
          const b = main.querySelector('#changes');
          b.classList.remove('hidden');
          b.innerHTML = `${label('new_changes')} (${unseen})`;
          b.onclick = () => window.dispatchEvent(new HashChangeEvent('hashchange'));
        }
      }
    },
  };
}
