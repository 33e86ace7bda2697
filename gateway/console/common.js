// Shared by every console page (and, read-only, by the enterprise portal): the API wrapper
// (session cookie, CSRF header, 401 -> login), labels in two languages, times in the town's
// zone, severity labels, the top bar and the live event stream.
//
// Server text only ever reaches the page through textContent or setAttribute (el() below);
// nothing here parses HTML.
import { MESSAGES } from './i18n.js';

export const TIMEZONE = 'Asia/Shanghai';
export const SEVERITIES = ['red', 'orange', 'yellow', 'blue'];
export const RANK = { red: 4, orange: 3, yellow: 2, blue: 1 };
export const DISPOSITIONS = ['real', 'false_alarm', 'test', 'maintenance', 'device_fault'];
export const LOGIN_PAGE = '/login.html';
export const PORTAL_PAGE = '/portal.html';
const LANG_KEY = 'ewg.lang';
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

// An old bookmark or the demo's printed link may carry an API token in the fragment
// (``/#token=…``). The pages sign in by session only: take the token out of the address bar
// and the history at once, so it never reaches a ``?next=`` address, a screenshot or a log.
{
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.has('token')) {
    h.delete('token');
    const rest = h.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }
}

// ---------- DOM ----------
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** An element with attributes (``text`` sets textContent) and children (strings become text). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = String(v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}
export const str = (v) => (v === null || v === undefined ? '' : String(v));

// ---------- labels ----------
let lang = 'zh';
const langListeners = [];
try { lang = localStorage.getItem(LANG_KEY) === 'en' ? 'en' : 'zh'; } catch { /* storage off */ }

/** Add labels (the portal's own); existing keys are kept. */
export function addMessages(extra) {
  for (const l of Object.keys(MESSAGES)) MESSAGES[l] = { ...(extra[l] || {}), ...MESSAGES[l] };
}
export function getLang() { return lang; }
/** The label in the chosen language; ``{name}`` is filled from vars. Unknown keys show as is. */
export function t(key, vars) {
  let s = MESSAGES[lang][key] ?? MESSAGES.zh[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll('{' + k + '}', str(v));
  return s;
}
/** Fill [data-i18n] text, and [data-i18n-placeholder] / [data-i18n-title] attributes. */
export function applyI18n(root = document) {
  for (const e of $$('[data-i18n]', root)) e.textContent = t(e.dataset.i18n);
  for (const e of $$('[data-i18n-placeholder]', root)) e.placeholder = t(e.dataset.i18nPlaceholder);
  for (const e of $$('[data-i18n-title]', root)) e.title = t(e.dataset.i18nTitle);
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const b of $$('.lang button')) b.setAttribute('aria-pressed', String(b.dataset.lang === lang));
}
export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh';
  try { localStorage.setItem(LANG_KEY, lang); } catch { /* storage off */ }
  applyI18n();
  for (const fn of langListeners) fn(lang);
}
export function onLangChange(fn) { langListeners.push(fn); }
/** A label when the dictionary has one (industry codes, say), else the value itself. */
export const labelOr = (prefix, value) => (MESSAGES[lang][prefix + value] || MESSAGES.zh[prefix + value] || str(value));
export const industryLabel = (code) => labelOr('ind_', code);
export const sevLabel = (s) => (SEVERITIES.includes(s) ? t('sev_' + s) : str(s));
export const titleOf = (a) => str(lang === 'zh' ? a.title_zh || a.title_en || a.rule : a.title_en || a.title_zh || a.rule);

// ---------- times (always the town's zone, whatever the browser's) ----------
const FMT = new Intl.DateTimeFormat('sv-SE', {
  timeZone: TIMEZONE, year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});
const toMs = (v) => (typeof v === 'number' ? v : Date.parse(v));
/** "2026-12-01 17:08:20" in Asia/Shanghai, from epoch ms or an ISO string. */
export function fmtTime(v) {
  const ms = toMs(v);
  return v === null || v === undefined || Number.isNaN(ms) ? '' : FMT.format(new Date(ms));
}
/** The local calendar day "2026-12-01" in Asia/Shanghai. */
export const fmtDay = (v) => fmtTime(v).slice(0, 10);
export function fmtAgo(v, now = Date.now()) {
  const ms = toMs(v);
  if (Number.isNaN(ms)) return '';
  const min = Math.floor((now - ms) / 60000);
  if (min < 1) return t('ago_now');
  if (min < 60) return t('ago_min', { n: min });
  if (min < 1440) return t('ago_hour', { n: Math.floor(min / 60) });
  return t('ago_day', { n: Math.floor(min / 1440) });
}
export function fmtNumber(v, unit = '') {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return '—';
  const n = Number(v), s = Math.abs(n) >= 100 ? n.toFixed(0) : String(Math.round(n * 100) / 100);
  return unit ? `${s} ${unit}` : s;
}

// ---------- API ----------
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
function cookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return '';
}
export const csrfToken = () => cookie('ewg_csrf');
function detailOf(data) {
  const d = data && data.detail;
  if (typeof d === 'string') return d;
  if (Array.isArray(d)) return d.map((x) => (x && x.msg ? x.msg : JSON.stringify(x))).join('; ');
  return d ? JSON.stringify(d) : '';
}
export function loginUrl(next = location.pathname + location.search + location.hash) {
  return LOGIN_PAGE + (next && next !== '/' ? '?next=' + encodeURIComponent(next) : '');
}
/**
 * Call the API with the session cookie. Unsafe methods carry the CSRF header (the value of the
 * ``ewg_csrf`` cookie). A 401 sends the browser to the login page (unless redirect401 is off).
 * Resolves to the parsed JSON (or the Response with raw); throws ApiError otherwise.
 */
export async function api(method, path, body, { redirect401 = true, raw = false } = {}) {
  const opts = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
  if (UNSAFE.has(method)) opts.headers['X-CSRF-Token'] = csrfToken();
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  let res;
  try { res = await fetch(path, opts); } catch { throw new ApiError(0, t('err_network')); }
  if (res.status === 401 && redirect401) {
    toLogin(loginUrl());
    throw new ApiError(401, 'unauthorized');
  }
  if (raw && res.ok) return res;
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const msg = res.status === 403 ? t('err_forbidden') : detailOf(data) || `HTTP ${res.status}`;
    throw new ApiError(res.status, msg);
  }
  return data;
}

let mePromise = null;
/** Who is signed in (cached for the page); a 401 goes to the login page. */
export function me() {
  if (!mePromise) mePromise = api('GET', '/api/auth/me');
  return mePromise;
}
/*
 * One trip to the login page per page: a logout ends the session, so the live stream and the
 * watchdog get 401s too, and a second location.assign() would abort the first navigation
 * (and land on ?next= of the page just left).
 */
let leaving = false;
function toLogin(url) {
  if (leaving) return;
  leaving = true;
  location.assign(url);
}
export async function logout() {
  leaving = true;   // the 401s the logout causes elsewhere on this page go nowhere
  try { await api('POST', '/api/auth/logout', undefined, { redirect401: false }); } catch { /* gone anyway */ }
  location.assign(LOGIN_PAGE);
}
/** Where a freshly signed-in user belongs: enterprise users to the portal, others to the board. */
export function homeOf(user) { return user && user.role === 'enterprise' ? PORTAL_PAGE : '/'; }

// ---------- page furniture ----------
let messageTimer = null;
/** A message bar under the top bar (click to dismiss); an empty text hides it. */
export function showMessage(text, { sticky = false } = {}) {
  let box = $('#message');
  if (!box) { box = el('div', { id: 'message', class: 'message', role: 'alert' }); document.body.prepend(box); }
  box.textContent = text || ''; box.hidden = !text;
  box.onclick = () => { box.hidden = true; };
  clearTimeout(messageTimer);
  if (text && !sticky) messageTimer = setTimeout(() => { box.hidden = true; }, 8000);
}
/** The page for an object that does not exist or is not the caller's: no data, a way back. */
export function showNotFound(main = $('main')) {
  document.body.dataset.notFound = 'true';
  main.replaceChildren(el('section', { class: 'panel notfound', id: 'notfound' },
    el('h2', { 'data-i18n': 'notfound_title', text: t('notfound_title') }),
    el('p', { 'data-i18n': 'notfound_text', text: t('notfound_text') }),
    el('a', { href: '/', class: 'button', 'data-i18n': 'back_board', text: t('back_board') })));
}

const NAV = [['board', '/', 'nav_board'], ['sites', '/sites.html', 'nav_sites'], ['stats', '/stats.html', 'nav_stats']];
/**
 * Fill ``<header id="top">``: title, navigation, live state, user, language and sign-out.
 * Resolves to the signed-in user (or redirects to the login page).
 */
export async function topBar({ active = '' } = {}) {
  const top = $('#top');
  top.classList.add('top');
  const nav = el('nav', { class: 'nav', 'aria-label': 'EWG' });
  const user = el('span', { class: 'user', id: 'user' });
  const lang = el('span', { class: 'lang', role: 'group', 'aria-label': 'Language / 语言' },
    el('button', { type: 'button', id: 'lang-zh', 'data-lang': 'zh', lang: 'zh-CN', text: '中文', onclick: () => setLang('zh') }),
    el('button', { type: 'button', id: 'lang-en', 'data-lang': 'en', lang: 'en', text: 'EN', onclick: () => setLang('en') }));
  const out = el('button', { type: 'button', id: 'logout', class: 'plain', 'data-i18n': 'logout', text: t('logout'), onclick: logout });
  top.replaceChildren(el('h1', { 'data-i18n': 'app_title', text: t('app_title') }), nav,
    el('span', { id: 'live', class: 'chip', 'data-state': 'idle', role: 'status', hidden: true }), user, lang, out);
  applyI18n();
  const who = await me();
  const items = who.role === 'enterprise' ? [['portal', PORTAL_PAGE, 'nav_portal']] : NAV;
  nav.replaceChildren(...items.map(([id, href, key]) => el('a', {
    href, 'data-i18n': key, text: t(key), 'aria-current': id === active ? 'page' : null,
  })));
  const role = () => `${str(who.display_name || who.username)} · ${t('role_' + who.role)}`;
  user.textContent = role();
  onLangChange(() => { user.textContent = role(); });
  return who;
}

// ---------- live stream ----------
const RETRY_MS = 3000;
// A dropped network (a cable, Wi-Fi, a proxy) leaves an event stream open but silent, so the
// page also asks the gateway who is signed in this often; a failure means the link is down.
const WATCHDOG_MS = 5000;
/**
 * The alert stream (Server-Sent Events, authenticated by the session cookie). Calls
 * ``onAlert({kind, alert})`` per change and ``onState('connecting'|'live'|'reconnecting'|
 * 'offline')``; on every (re)connect ``onOpen()`` (the caller reloads what it may have missed).
 * A refused or lost stream is retried every few seconds; a 401 on the check goes to the login.
 */
export function liveStream({ onAlert, onOpen = () => {}, onState = () => {} }) {
  let es = null, timer = null, state = 'idle';
  const chip = () => $('#live');
  const banner = () => $('#conn-lost');
  const setState = (s) => {
    state = s;
    const c = chip();
    if (c) { c.hidden = false; c.dataset.state = s; c.textContent = t('live_' + s); }
    const b = banner();
    if (b) b.hidden = s === 'live' || s === 'connecting';
    document.body.dataset.live = s;
    onState(s);
  };
  onLangChange(() => { const c = chip(); if (c && c.dataset.state !== 'idle') c.textContent = t('live_' + c.dataset.state); });
  const lost = () => {
    if (es) es.close();
    es = null; setState('offline');
    clearTimeout(timer); timer = setTimeout(open, RETRY_MS);
  };
  const open = () => {
    clearTimeout(timer);
    if (es) es.close();
    es = new EventSource('/api/alerts/stream');
    const mine = es;
    setState(state === 'offline' ? 'reconnecting' : 'connecting');
    es.addEventListener('open', () => { if (mine === es) { setState('live'); onOpen(); } });
    es.addEventListener('alert', (ev) => {
      let msg; try { msg = JSON.parse(ev.data); } catch { return; }
      onAlert(msg);
    });
    es.addEventListener('error', () => {
      if (mine !== es) return;
      if (es.readyState !== EventSource.CLOSED) { setState('reconnecting'); return; }   // the browser retries
      // Refused (401 after a logout elsewhere?) or the gateway is down: ask, then try again.
      api('GET', '/api/auth/me').catch(() => {});
      lost();
    });
  };
  setInterval(async () => {
    if (!es) return;   // already retrying
    try { await api('GET', '/api/auth/me'); } catch (e) { if (e.status === 0) lost(); }
  }, WATCHDOG_MS);
  open();
  return { close() { clearTimeout(timer); if (es) es.close(); es = null; }, reopen: open };
}
