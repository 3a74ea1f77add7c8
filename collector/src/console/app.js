// The console's shell: the header (navigation, login, language), hash routing to one view
// module per page, and the live stream that tells the open view what changed.
import { t, setLang, getLang, relabel, code, esc, label } from './i18n.js';
import * as api from './api.js';
import * as queue from './queue.js';
import * as task from './task.js';
import * as entity from './entity.js';
import * as pub from './public.js';
import * as admin from './admin.js';

const $ = id => document.getElementById(id);
let view = null, stopLive = null, generation = 0;

function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, qs] = h.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(qs || '') };
}

function home() {
  const r = api.role();
  return r === 'inspector' ? '#/mine' : r ? '#/queue' : '#/public/results';
}

function nav() {
  const r = api.role(), here = location.hash;
  const links = [];
  if (r && r !== 'inspector') links.push(['#/queue', 'nav_queue'], ['#/entities', 'nav_entities']);
  if (r === 'inspector') links.push(['#/mine', 'nav_mine']);
  links.push(['#/public/results', 'nav_results'], ['#/public/draws', 'nav_draws']);
  if (r && r !== 'inspector') links.push(['#/admin', 'nav_admin']);
  $('nav').innerHTML = links.map(([href, key]) => `<a href="${href}" data-t="${key}"${here.startsWith(href) ? ' class="active"' : ''}>${esc(t(key))}</a>`).join('');
}

function header() {
  const me = api.session.me;
  $('app-title').textContent = t('app');
  $('login-form').classList.toggle('hidden', !!me);
  $('logout').classList.toggle('hidden', !me || !!api.bearer());
  $('login-user').placeholder = t('user_name');
  $('login-password').placeholder = t('password');
  $('login-submit').textContent = t('login');
  $('logout').textContent = t('logout');
  $('lang').textContent = t('lang_switch');
  $('confirm-ok').textContent = t('confirm');
  $('confirm-cancel').textContent = t('cancel');
  const u = me && me.user;
  $('whoami').textContent = u ? `${u.name} (${code('role', u.role)}${u.department ? ' · ' + code('dept', u.department) : ''}${u.inspector ? ' · ' + u.inspector : ''})` : '';
  $('whoami').dataset.role = u ? u.role : '';
  nav();
}

function startLive() {
  if (stopLive) stopLive();
  stopLive = null;
  if (!api.session.me || api.session.me.user.must_change_password) { $('live').textContent = ''; return; }
  stopLive = api.live((ev, data) => {
    // How many counts events came (the first follows `ready` at once): tests and the
    // benchmark await it instead of sleeping.
    if (ev === 'counts') $('live').dataset.counts = Number($('live').dataset.counts || 0) + 1;
    if (view && view.onLive) view.onLive(ev, data);
  }, up => {
    $('live').innerHTML = up ? '● ' + label('live_on') : '○ ' + label('live_off');
    $('live').className = 'small ' + (up ? 'online' : 'offline');
  });
}

export async function route() {
  const g = ++generation;
  if (api.takeToken()) { await api.whoami(); startLive(); }
  header();
  if (!location.hash || location.hash === '#/' || location.hash === '#') { location.replace(home()); return; }
  const me = api.session.me && api.session.me.user;
  if (me && me.must_change_password) { ownPassword(me); return; }
  const { parts, params } = parseHash();
  if (view && view.leave) view.leave();
  view = null;
  // Each page renders into a fresh element: a late answer for the page before lands in a
  // detached element and cannot overwrite this one.
  const main = document.createElement('div');
  main.className = 'page';
  main.innerHTML = `<section>${esc(t('loading'))}</section>`;
  $('main').replaceChildren(main);
  try {
    let v;
    switch (parts[0]) {
      case 'queue': v = await queue.render(main, params, { mine: false }); break;
      case 'mine': v = await queue.render(main, params, { mine: true }); break;
      case 'task': v = await task.render(main, Number(parts[1]), params); break;
      case 'entities': v = await entity.renderList(main); break;
      case 'entity': v = await entity.render(main, parts[1], params); break;
      case 'public': v = await pub.render(main, parts.slice(1), params); break;
      case 'admin': v = await admin.render(main, parts.slice(1), params); break;
      default: location.replace(home()); return;
    }
    if (g === generation) view = v || null; else if (v && v.leave) v.leave();
  } catch (e) {
    if (g === generation) main.innerHTML = `<section class="msg">${esc(e.status === 403 ? t('forbidden') : e.message)}</section>`;
  }
}

/**
 * A password the admin set only lets its session choose the user's own (the server refuses
 * everything else): ask for it, save it, and log in again with it (saving ends the session).
 */
function ownPassword(me) {
  if (view && view.leave) view.leave();
  view = null;
  const main = document.createElement('div');
  main.className = 'page';
  main.innerHTML = `<section id="own-password"><h2 data-t="own_password_title">${esc(t('own_password_title'))}</h2>
    <p data-t="own_password_why">${esc(t('own_password_why'))}</p>
    <form id="own-password-form"><input id="own-password-1" type="password" autocomplete="new-password" placeholder="${esc(t('new_password'))}">
    <input id="own-password-2" type="password" autocomplete="new-password" placeholder="${esc(t('repeat_password'))}">
    <button id="own-password-save" class="primary" type="submit" data-t="save_password">${esc(t('save_password'))}</button></form>
    <p id="own-password-msg" class="msg"></p></section>`;
  $('main').replaceChildren(main);
  $('own-password-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    const [a, b] = [$('own-password-1').value, $('own-password-2').value];
    if (a !== b) { $('own-password-msg').textContent = t('passwords_differ'); return; }
    try {
      await api.put(`/api/v1/users/${me.id}/password`, { password: a });
      await api.login(me.name, a);
      startLive();
      location.hash = home();
      route();
    } catch (e) { $('own-password-msg').textContent = e.message; }
  });
}

/** Asks for confirmation in a dialog (not the browser's prompt); resolves to true on OK. */
export function confirmDialog(text) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise(res => {
    d.onclose = () => res(d.returnValue === 'ok');
    d.returnValue = '';
    d.showModal();
  });
}
window.spotcheckConfirm = confirmDialog;

$('login-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  try {
    // A link to a task (as notifications carry) leads there once logged in.
    const wanted = location.hash.startsWith('#/task/') ? location.hash : null;
    await api.login($('login-user').value.trim(), $('login-password').value);
    $('auth').textContent = '';
    $('login-password').value = '';
    startLive();
    location.hash = wanted || home();
    route();
  } catch (e) { $('auth').textContent = t('login_failed') + ': ' + e.message; }
});
$('logout').addEventListener('click', async () => {
  await api.logout();
  startLive();
  location.hash = '#/public/results';
  route();
});
$('lang').addEventListener('click', () => {
  setLang(getLang() === 'zh' ? 'en' : 'zh');
  header();
  relabel(document);
  if (view && view.relabel) view.relabel(); else route();
});
window.addEventListener('spotcheck-unauthorized', () => {
  if (api.session.me) { api.session.me = null; $('auth').textContent = t('session_ended'); header(); startLive(); }
});
window.addEventListener('hashchange', route);
// A page the browser keeps in its back/forward cache keeps its requests open, and the live
// stream never ends: every console page left that way would hold one of the few connections a
// browser opens to a host (six in Chromium), and once they are taken every request waits until
// the server's keep-alive, a minute later, gets the cached page evicted. So the stream stops
// when the page is hidden and starts again if the page comes back from that cache.
window.addEventListener('pagehide', () => { if (stopLive) stopLive(); stopLive = null; });
window.addEventListener('pageshow', ev => { if (ev.persisted) startLive(); });

api.whoami().then(() => { startLive(); route(); });
