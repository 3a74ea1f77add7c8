// Talking to the collector: a bearer token (from `#token=` in the URL, for scripts and the
// demo's links) or the session cookie with its CSRF token on writes.
import { t, esc } from './i18n.js';

export const session = { me: null };
// `#token=SECRET[&go=/task/7]`: keep the token for this tab, drop it from the URL, go on.
// Returns whether the URL carried a token.
export function takeToken() {
  if (!location.hash.startsWith('#token=')) return false;
  const p = new URLSearchParams(location.hash.slice(1));
  sessionStorage.setItem('spotcheck-token', p.get('token'));
  history.replaceState(null, '', location.pathname + '#' + (p.get('go') || '/'));
  return true;
}
takeToken();
export const bearer = () => sessionStorage.getItem('spotcheck-token');

export function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (bearer()) h.Authorization = 'Bearer ' + bearer();
  else if (session.me && session.me.csrf_token) h['X-CSRF-Token'] = session.me.csrf_token;
  return h;
}

/** An API error, with the server's message and the rest of its error object (`details`). */
export class ApiError extends Error {
  constructor(status, message, details) { super(message); this.status = status; this.details = details || {}; }
}

async function answer(r) {
  const text = await r.text();
  let j = null;
  try { j = text ? JSON.parse(text) : null; } catch (_) { j = text; }
  if (!r.ok) {
    const msg = (j && j.error && j.error.message) || `${t('error')} ${r.status}`;
    if (r.status === 401) window.dispatchEvent(new CustomEvent('spotcheck-unauthorized'));
    throw new ApiError(r.status, msg, j && j.error);
  }
  return j;
}

/** GET `path` as JSON. */
export async function get(path) {
  return answer(await fetch(path, { headers: headers(), credentials: 'same-origin' }));
}

/** A write with a JSON body. */
export async function send(method, path, body) {
  return answer(await fetch(path, { method, credentials: 'same-origin', headers: headers({ 'Content-Type': 'application/json' }), body: body === undefined ? undefined : JSON.stringify(body) }));
}
export const post = (path, body) => send('POST', path, body || {});
/** A write whose body is sent as it is (a file's text), with its content type. */
export async function sendText(method, path, text, contentType) {
  return answer(await fetch(path, { method, credentials: 'same-origin', headers: headers({ 'Content-Type': contentType }), body: text }));
}
export const put = (path, body) => send('PUT', path, body);

export async function whoami() {
  const r = await fetch('/api/v1/session', { headers: headers(), credentials: 'same-origin' });
  session.me = r.ok ? await r.json() : null;
  return session.me;
}
export async function login(user, password) {
  const r = await fetch('/api/v1/session', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user, password }) });
  session.me = await answer(r);
  return session.me;
}
export async function logout() {
  await fetch('/api/v1/session', { method: 'DELETE', credentials: 'same-origin', headers: headers() });
  session.me = null;
}
export const role = () => session.me ? session.me.user.role : null;
/** A link to an entity's page, or its name alone for those who may not open it (inspectors). */
export function entityLink(code, name) {
  const text = name || code;
  return role() === 'inspector' ? `<span class="entity-name">${esc(text)}</span>` : `<a href="#/entity/${encodeURIComponent(code)}">${esc(text)}</a>`;
}
/** Whether the caller manages `task` (the admin; a supervisor of its department). */
export function manages(task) {
  const me = session.me && session.me.user;
  if (!me) return false;
  return me.role === 'admin' || (me.role === 'supervisor' && (!task || task.department === me.department));
}

let categories = null;
/** The result categories, from the API (cached). */
export async function resultCategories() {
  return categories || (categories = await get('/api/v1/public/results/categories'));
}

/**
 * The live stream (`/api/v1/live`), read with fetch so that a bearer token can go along.
 * Calls on(event, data) per event; reconnects with a growing pause.
 */
export function live(on, status) {
  let pause = 2000, stopped = false, ctrl = null;
  async function run() {
    while (!stopped) {
      try {
        ctrl = new AbortController();
        const r = await fetch('/api/v1/live', { headers: headers({ Accept: 'text/event-stream' }), credentials: 'same-origin', signal: ctrl.signal });
        if (!r.ok || !r.body) throw new Error('live ' + r.status);
        status(true); pause = 2000;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            let ev = 'message', data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) ev = line.slice(7);
              else if (line.startsWith('data: ')) data += line.slice(6);
            }
            if (data) { try { on(ev, JSON.parse(data)); } catch (_) { /* a bad event is skipped */ } }
          }
        }
      } catch (_) { /* reconnect below */ }
      status(false);
      if (stopped) break;
      await new Promise(res => setTimeout(res, pause));
      pause = Math.min(pause * 2, 60000);
    }
  }
  run();
  return () => { stopped = true; if (ctrl) ctrl.abort(); };
}
