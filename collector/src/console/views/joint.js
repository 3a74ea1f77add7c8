// Joint inspections (部门联合抽查): each department's quota for a year (its drawn random
// tasks, the joint tasks the rule requires and those it has), the same against the annual
// plans, the joint plans with their partners and progress, each plan's batches with the tasks
// their draws made per department, and the joint tasks.
import { t, esc, label, codeLabel, getLang, chinaDay } from './i18n.js';
import * as api from './api.js';
import { htmlTable, failure } from './tables.js';

/** The year asked for (`?year=`), or this year in China; null if it is not a year. */
function yearOf(params) {
  const y = (params.get('year') || '').trim();
  if (!y) return Number(chinaDay().slice(0, 4));
  return /^\d{4}$/.test(y) ? Number(y) : null;
}

/** How the rule reads for a department with `n` random tasks (the API's words in English). */
function rule(q) {
  if (getLang() === 'en') return esc(q.rule);
  const n = q.random_tasks;
  if (n === 0) return esc(t('joint_rule_none'));
  return esc((n <= 100 ? t('joint_rule_small') : t('joint_rule_large')).replace('{n}', n));
}

/** Joint tasks against the required number, as a bar and "have / required". */
function progress(q) {
  const max = Math.max(q.required, 1);
  return `<span class="nowrap"><progress value="${Math.min(q.joint_tasks, max)}" max="${max}"></progress> <span class="n">${esc(q.joint_tasks)} / ${esc(q.required)}</span></span>`;
}

function quotaTable(id, quotas) {
  return htmlTable(id, ['department', 'random_tasks', 'required', 'joint_tasks', 'progress', 'met', 'rule'], quotas.map(q => [
    `class="quota ${q.met ? 'met' : 'unmet'}" data-department="${esc(q.department)}" data-required="${esc(q.required)}" data-joint="${esc(q.joint_tasks)}" data-random="${esc(q.random_tasks)}"`,
    [codeLabel('dept', q.department), esc(q.random_tasks), esc(q.required), esc(q.joint_tasks), progress(q),
      q.met ? `<span class="ok">✓ ${label('met')}</span>` : `<span class="msg">✗ ${label('not_met')}</span>`, rule(q)],
  ]));
}

// How many joint tasks one read fetches; a plan with more shows a note that the list is cut.
const TASK_LIMIT = 10000;

/**
 * Per joint plan and batch (undrawn batches too): the tasks the batch's draws made (a task's
 * `joint` is its plan, `batch` its batch), counted per department, and the tasks as links.
 */
function planTasks(plans, tasks) {
  const rows = [];
  for (const p of plans) {
    const departments = [p.department, ...p.partners.map(x => x.department)];
    for (const b of p.batches) {
      const ts = tasks.filter(x => x.joint === p.id && x.batch === b.label).sort((x, y) => x.id - y.id);
      const entities = new Set(ts.map(x => x.entity)).size;
      const per = departments.map(d => {
        // A supervisor's task list holds their own department's tasks only: another's count
        // would read 0, so it shows as not theirs to see.
        if (api.role() === 'supervisor' && !api.manages({ department: d })) {
          return `<div class="dept-count" data-department="${esc(d)}" data-hidden="1">${codeLabel('dept', d)} <span class="muted" data-t="not_yours">${esc(t('not_yours'))}</span></div>`;
        }
        const n = ts.filter(x => x.department === d).length;
        return `<div class="dept-count" data-department="${esc(d)}" data-n="${n}">${codeLabel('dept', d)} <b>${n}</b></div>`;
      }).join('');
      const list = ts.length === 0 ? `<span class="muted">${label('not_drawn')}</span>`
        : `<details><summary>${label('show_tasks')} (${ts.length})</summary>${ts.map(x => `<div class="plan-task" data-task="${esc(x.id)}">
            <a href="#/task/${encodeURIComponent(x.id)}">#${esc(x.id)}</a> ${codeLabel('dept', x.department)} ${codeLabel('status', x.status)}
            <a href="#/entity/${encodeURIComponent(x.entity)}" class="code small">${esc(x.entity)}</a></div>`).join('')}</details>`;
      rows.push([`class="plan-batch" data-plan="${esc(p.id)}" data-batch="${esc(b.label)}" data-tasks="${ts.length}" data-entities="${entities}"`, [
        `<span class="code">${esc(p.id)}</span>`, `${esc(b.label)}<div class="small muted">${esc(b.start)} – ${esc(b.end)}</div>`,
        per, esc(entities), list,
      ]]);
    }
  }
  return htmlTable('joint-plan-tasks', ['plan', 'batch', 'departments', 'entities', 'tasks'], rows);
}

/** The joint tab's HTML for the year in `params`. */
export async function render(params) {
  const year = yearOf(params);
  const form = `<form id="joint-form" class="filters"><label><span data-t="year">${esc(t('year'))}</span>
    <input id="joint-year" inputmode="numeric" size="6" value="${esc(year == null ? params.get('year') : year)}"></label>
    <button type="submit" id="joint-apply" data-t="apply">${esc(t('apply'))}</button></form>`;
  if (year == null) return `${form}<p class="msg" id="joint-error">${label('bad_year')} <span class="code">${esc(params.get('year'))}</span></p>`;
  let j, plans, tasks;
  try {
    [j, plans, tasks] = await Promise.all([api.get(`/api/v1/joint?year=${year}`), api.get('/api/v1/plans'),
      api.get(`/api/v1/tasks?kind=joint&limit=${TASK_LIMIT}`)]);
  } catch (e) { return form + failure('load_failed', e, 'joint-error'); }
  const joint = plans.filter(p => (p.partners || []).length > 0);
  const prog = await Promise.all(joint.map(p => api.get(`/api/v1/plans/${encodeURIComponent(p.id)}/progress`).catch(() => null)));
  const plansHtml = htmlTable('joint-plans', ['plan', 'year', 'initiator', 'partners', 'batches', 'progress'], joint.map((p, i) => {
    const g = prog[i];
    return [`class="joint-plan" data-plan="${esc(p.id)}"`, [
      `<span class="code">${esc(p.id)}</span>`, esc(p.year),
      `${codeLabel('dept', p.department)}<div class="small muted">${esc(p.item)}</div>`,
      p.partners.map(x => `<div class="partner" data-department="${esc(x.department)}">${codeLabel('dept', x.department)} <span class="small muted">${esc(x.item)}</span></div>`).join(''),
      p.batches.map(b => `<div>${esc(b.label)}: ${esc(b.start)} – ${esc(b.end)}</div>`).join(''),
      g ? `<span class="nowrap"><progress value="${g.drawn}" max="${Math.max(g.planned, 1)}"></progress> <span class="n">${esc(g.drawn)} / ${esc(g.planned)}</span></span> <span class="small muted">${label('r_drawn')}</span>
        <div class="small">${label('batches_drawn')} ${esc(g.batches_drawn)} / ${esc(g.batches)}</div>` : '',
    ]];
  }));
  const tasksHtml = htmlTable('joint-tasks', ['entity', 'window', 'departments', 'items', 'tasks'], j.joint_tasks.map(x => [
    `class="joint-task" data-entity="${esc(x.entity)}"`,
    [`<a href="#/entity/${encodeURIComponent(x.entity)}" class="code">${esc(x.entity)}</a>`, `${esc(x.start)} – ${esc(x.end)}`,
      x.departments.map(d => codeLabel('dept', d)).join('、'), x.items.map(i => `<span class="code">${esc(i)}</span>`).join(' '),
      x.tasks.map(id => `<a href="#/task/${id}">#${id}</a>`).join(' ')],
  ]));
  return `${form}<h3>${label('joint_quota')} (${esc(year)})</h3><p class="small muted" data-t="joint_quota_hint">${esc(t('joint_quota_hint'))}</p>${quotaTable('joint-quotas', j.quotas)}
    <h3>${label('joint_planned')}</h3>${quotaTable('joint-planned', j.planned_quotas)}
    <h3>${label('joint_plans')}</h3>${plansHtml}
    <h3>${label('joint_plan_tasks')}</h3>${tasks.length >= TASK_LIMIT ? `<p class="small msg" id="joint-plan-tasks-cut">${label('joint_tasks_cut')} ${TASK_LIMIT}</p>` : ''}${planTasks(joint, tasks)}
    <h3>${label('joint_tasks')} (${j.joint_tasks.length})</h3>${tasksHtml}`;
}

/** Wires the year form: the year goes into the URL, so a link shows the same. */
export function wire(root, reload) {
  const f = root.querySelector('#joint-form');
  if (!f) return;
  f.addEventListener('submit', ev => {
    ev.preventDefault();
    const h = `#/admin/joint?year=${encodeURIComponent(root.querySelector('#joint-year').value.trim())}`;
    if (h === location.hash) reload(''); else location.hash = h;
  });
}
