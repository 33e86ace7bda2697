// The live duty board: open incidents and alerts, red first, updated from the event stream.
// A new red alert sounds (Web Audio, no file) and shows a banner until someone acknowledges it.
import {
  $, $$, api, applyI18n, el, fmtAgo, fmtNumber, fmtTime, industryLabel, liveStream, onLangChange,
  PORTAL_PAGE, RANK, SEVERITIES, sevLabel, showMessage, str, t, titleOf, topBar,
} from './common.js';

const COLUMNS = ['level', 'title', 'site', 'device', 'value', 'count', 'state', 'raised', 'actions'];
const TICK_MS = 15000;
const BEEP_EVERY_MS = 2000;
const INCIDENTS_DEBOUNCE_MS = 300;
const SOUND_KEY = 'ewg.sound';
const FILTERS = ['village', 'industry', 'class', 'state'];

const S = {
  alerts: new Map(),      // id -> alert (open ones only)
  rows: new Map(),        // id -> <tr>
  fresh: new Set(),       // ids raised since the page opened, flashed once
  incidents: [],
  sites: [],
  buffer: null,           // stream messages arriving while the list loads
  reloadAgain: false,
  live: 'connecting',
  incidentsTimer: null,
};

// ---------- sound: a page-side hook (window.__ewgSound) lets tests see every beep ----------
const sound = window.__ewgSound = { beeps: 0, enabled: true, ctx: null, timer: null, suspended: false };
try { sound.enabled = localStorage.getItem(SOUND_KEY) !== 'off'; } catch { /* storage off */ }
function beep() {
  sound.beeps++;
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!sound.ctx) sound.ctx = new Ctx();
    const ctx = sound.ctx;
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    sound.suspended = ctx.state === 'suspended';   // the browser wants a click on the page first
    const now = ctx.currentTime;
    for (const [at, freq] of [[0, 880], [0.25, 660]]) {   // a two-tone "dee-da", 0.2 s each
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.type = 'square'; osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(0.2, now + at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(now + at); osc.stop(now + at + 0.22);
    }
  } catch { /* no audio device: the banner still shows */ }
  renderSoundButton();
}
// Browsers keep audio off until the page gets a click or a key: any one unlocks the beep.
for (const kind of ['pointerdown', 'keydown']) {
  document.addEventListener(kind, () => {
    if (sound.ctx && sound.ctx.state === 'suspended') {
      sound.ctx.resume().then(() => { sound.suspended = false; renderSoundButton(); }).catch(() => {});
    }
  }, { capture: true });
}
function alarming() {
  return [...S.alerts.values()].filter((a) => a.severity === 'red' && !a.acknowledged && !a.muted)
    .sort((a, b) => b.raised_at_ms - a.raised_at_ms);
}
function updateAlarm() {
  const reds = alarming(), banner = $('#red-banner');
  banner.hidden = !reds.length;
  if (reds.length) {
    const a = reds[0];
    $('.banner-text', banner).textContent = t('banner_red', { title: titleOf(a), site: str(a.site_name || a.site_id) });
    $('.banner-more', banner).textContent = reds.length > 1 ? t('banner_more', { n: reds.length - 1 }) : '';
    banner.dataset.alertId = String(a.id);
    $('#banner-details').href = `/alert.html?id=${a.id}`;
  }
  const ring = reds.length > 0 && sound.enabled;
  if (ring && !sound.timer) { beep(); sound.timer = setInterval(beep, BEEP_EVERY_MS); }
  if (!ring && sound.timer) { clearInterval(sound.timer); sound.timer = null; }
}
function renderSoundButton() {
  const b = $('#sound-toggle');
  b.setAttribute('aria-pressed', String(sound.enabled));
  b.textContent = sound.enabled && sound.suspended ? t('sound_enable') : t(sound.enabled ? 'sound_on' : 'sound_off');
}
$('#sound-toggle').addEventListener('click', () => {
  if (sound.enabled && sound.suspended && sound.ctx) {   // this click is the gesture the browser wanted
    sound.ctx.resume().then(() => { sound.suspended = false; renderSoundButton(); }).catch(() => {});
    return;
  }
  sound.enabled = !sound.enabled;
  try { localStorage.setItem(SOUND_KEY, sound.enabled ? 'on' : 'off'); } catch { /* storage off */ }
  renderSoundButton(); updateAlarm();
});

// ---------- data ----------
function compareAlerts(a, b) {
  return (RANK[b.severity] || 0) - (RANK[a.severity] || 0)
    || Number(a.acknowledged) - Number(b.acknowledged)
    || (b.raised_at_ms || 0) - (a.raised_at_ms || 0) || b.id - a.id;
}
/** Apply one stream message {kind, alert}; closed alerts leave the board; stale ones are ignored. */
function applyChange(msg) {
  const a = msg && msg.alert;
  if (!a || a.id == null) return;
  if (msg.kind === 'closed' || a.state === 'closed') { S.alerts.delete(a.id); S.fresh.delete(a.id); return; }
  const old = S.alerts.get(a.id);
  if (old && Date.parse(old.updated_at) > Date.parse(a.updated_at)) return;
  S.alerts.set(a.id, a);
  if (msg.kind === 'raised') S.fresh.add(a.id);
}
async function loadAlerts() {
  if (S.buffer) { S.reloadAgain = true; return; }   // one load at a time
  S.buffer = [];
  try {
    const list = await api('GET', '/api/alerts?state=open');
    S.alerts = new Map();
    for (const a of list) if (a && a.id != null && a.state !== 'closed') S.alerts.set(a.id, a);
    for (const msg of S.buffer) applyChange(msg);   // what came in while we waited
  } catch (e) {
    if (e.status !== 401) showMessage(e.message);
  } finally {
    S.buffer = null; render();
    if (S.reloadAgain) { S.reloadAgain = false; loadAlerts(); }
  }
}
async function loadIncidents() {
  try { S.incidents = await api('GET', '/api/incidents?state=open'); renderIncidents(); }
  catch (e) { if (e.status !== 401) showMessage(e.message); }
}
function incidentsSoon() {
  clearTimeout(S.incidentsTimer);
  S.incidentsTimer = setTimeout(loadIncidents, INCIDENTS_DEBOUNCE_MS);
}
async function loadSites() {
  try { S.sites = await api('GET', '/api/console/sites'); } catch { S.sites = []; }
  fillFilterOptions();
}

// ---------- filters (kept in the address, so a reload or a bookmark keeps them) ----------
function filters() {
  const q = new URLSearchParams(location.search), f = {};
  for (const k of FILTERS) f[k] = q.get(k) || '';
  return f;
}
function matches(a, f) {
  return (!f.village || a.village === f.village) && (!f.industry || a.industry === f.industry)
    && (!f.class || a.alert_class === f.class) && (!f.state || a.state === f.state);
}
function fillFilterOptions() {
  const form = $('#filters'), f = filters();
  const values = { village: new Set(), industry: new Set() };
  for (const s of S.sites) { values.village.add(s.village); values.industry.add(s.industry); }
  for (const a of S.alerts.values()) { if (a.village) values.village.add(a.village); if (a.industry) values.industry.add(a.industry); }
  for (const key of ['village', 'industry']) {
    const select = form.elements[key], keep = f[key];
    const wanted = [...values[key]].filter(Boolean).sort((x, y) => x.localeCompare(y, 'zh-CN'));
    if (keep && !wanted.includes(keep)) wanted.push(keep);
    const have = [...select.options].slice(1).map((o) => o.value);
    if (have.join('\n') !== wanted.join('\n')) {
      select.replaceChildren(select.options[0], ...wanted.map((v) => el('option', { value: v, text: key === 'industry' ? industryLabel(v) : v })));
    } else if (key === 'industry') {
      for (const o of [...select.options].slice(1)) o.textContent = industryLabel(o.value);
    }
  }
  for (const k of FILTERS) form.elements[k].value = f[k];
}
$('#filters').addEventListener('change', () => {
  const form = $('#filters'), q = new URLSearchParams(location.search);
  for (const k of FILTERS) { const v = form.elements[k].value; if (v) q.set(k, v); else q.delete(k); }
  const qs = q.toString();
  history.replaceState(null, '', location.pathname + (qs ? '?' + qs : '') + location.hash);
  render();
});
$('#filters').addEventListener('reset', (e) => {
  e.preventDefault();
  history.replaceState(null, '', location.pathname + location.hash);
  fillFilterOptions(); render();
});
$('#filters').addEventListener('submit', (e) => e.preventDefault());

// ---------- rendering ----------
function buildHead() {
  for (const thead of $$('.group thead')) {
    const tr = el('tr');
    for (const col of COLUMNS) tr.append(el('th', { scope: 'col', 'data-i18n': 'col_' + col, text: t('col_' + col) }));
    thead.replaceChildren(tr);
  }
}
function fmtValue(a) {
  return a.value === null || a.value === undefined ? '—' : fmtNumber(a.value, a.unit);
}
/** One row per alert, built once and refilled on every update (a focused button keeps focus). */
function rowFor(a) {
  let tr = S.rows.get(a.id);
  if (!tr) {
    tr = el('tr', { 'data-alert-id': String(a.id) });
    tr.cells_ = {};
    for (const col of COLUMNS) tr.append(tr.cells_[col] = el('td', { class: 'col-' + col }));
    tr.ack_ = el('button', { type: 'button', class: 'primary ack', 'data-action': 'ack' });
    tr.details_ = el('a', { class: 'button details', href: `/alert.html?id=${a.id}` });
    tr.cells_.actions.append(tr.ack_, tr.details_);
    S.rows.set(a.id, tr);
  }
  const c = tr.cells_, now = Date.now(), title = titleOf(a);
  tr.dataset.severity = str(a.severity); tr.dataset.state = str(a.state);
  tr.dataset.alertClass = str(a.alert_class); tr.dataset.acknowledged = String(!!a.acknowledged);
  tr.dataset.village = str(a.village); tr.dataset.industry = str(a.industry);
  tr.classList.toggle('unacked', !a.acknowledged);
  for (const col of COLUMNS) c[col].dataset.label = t('col_' + col);
  c.level.replaceChildren(el('span', { class: 'sev-badge', 'data-severity': str(a.severity), text: sevLabel(a.severity) }));
  c.title.replaceChildren(...[
    el('div', { class: 'title' }, el('a', { href: `/alert.html?id=${a.id}`, text: title }),
      a.muted ? el('span', { class: 'flag', text: t('muted') }) : null,
      a.flapping ? el('span', { class: 'flag', text: t('flapping') }) : null),
    a.message ? el('div', { class: 'sub', text: str(a.message) }) : null].filter(Boolean));
  c.site.replaceChildren(el('div', { text: str(a.site_name || a.site_id) }),
    el('div', { class: 'sub', text: [a.village, a.address].filter(Boolean).map(str).join(' · ') }));
  c.site.title = industryLabel(a.industry);
  c.device.replaceChildren(el('a', { class: 'mono', href: `/device.html?id=${encodeURIComponent(a.device_id)}`, text: str(a.device_id) }));
  c.value.replaceChildren(el('span', { class: 'num', text: fmtValue(a) }));
  c.count.replaceChildren(el('span', { class: 'num', text: '×' + str(a.count ?? 1) }));
  const stateText = t('state_' + a.state) + (!a.acknowledged && a.state !== 'raised' ? ' · ' + t('unacked') : '');
  c.state.replaceChildren(el('span', { class: 'state-label', 'data-state': str(a.state), text: stateText }));
  c.raised.replaceChildren(el('time', { datetime: str(a.raised_at), text: fmtTime(a.raised_at) }),
    el('div', { class: 'sub', text: fmtAgo(a.raised_at, now) }));
  if (a.acknowledged && tr.ack_.isConnected) {
    const hadFocus = document.activeElement === tr.ack_;
    tr.ack_.remove(); if (hadFocus) tr.details_.focus();
  } else if (!a.acknowledged && !tr.ack_.isConnected) tr.cells_.actions.prepend(tr.ack_);
  tr.ack_.textContent = t('ack'); tr.ack_.setAttribute('aria-label', `${t('ack')}: ${title}`);
  tr.details_.textContent = t('details'); tr.details_.setAttribute('aria-label', `${t('details')}: ${title}`);
  if (S.fresh.delete(a.id)) { tr.classList.add('fresh'); setTimeout(() => tr.classList.remove('fresh'), 3000); }
  return tr;
}
function render() {
  fillFilterOptions();   // a village or industry first seen in an alert joins the choices
  const f = filters(), filtered = Object.values(f).some(Boolean);
  const groups = { hazards: [], faults: [] };
  const shown = [...S.alerts.values()].filter((a) => matches(a, f));
  for (const a of shown) groups[a.alert_class === 'fault' ? 'faults' : 'hazards'].push(a);
  for (const [id, list] of Object.entries(groups)) {
    list.sort(compareAlerts);
    const sec = $('#' + id), tbody = $('tbody', sec), keep = new Set();
    list.forEach((a, i) => {
      const tr = rowFor(a); keep.add(tr);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const tr of [...tbody.children]) if (!keep.has(tr)) tr.remove();
    $('.group-n', sec).textContent = String(list.length);
    $('table', sec).hidden = !list.length;
    const empty = $('.empty', sec);
    empty.hidden = !!list.length;
    empty.textContent = t(id === 'hazards' ? 'empty_hazard' : 'empty_fault') + (filtered ? ' ' + t('empty_filtered') : '');
  }
  for (const id of [...S.rows.keys()]) if (!S.alerts.has(id)) S.rows.delete(id);
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, 0]));
  for (const a of shown) if (a.severity in counts) counts[a.severity]++;
  for (const sev of SEVERITIES) {
    $('#count-' + sev).textContent = String(counts[sev]);
    $('#count-' + sev).parentElement.dataset.zero = String(!counts[sev]);
  }
  const unacked = [...S.alerts.values()].filter((a) => !a.acknowledged).length;
  document.title = (unacked ? `(${unacked}) ` : '') + 'EWG ' + t('app_title');
  renderIncidents();
  updateAlarm();
}
function renderIncidents() {
  const f = filters(), sec = $('#incidents'), list = $('.incident-list', sec);
  const shown = S.incidents.filter((i) => (!f.village || i.village === f.village) && (!f.industry || i.industry === f.industry));
  list.replaceChildren(...shown.map((i) => {
    const open = i.alert_ids.map((id) => S.alerts.get(id)).filter(Boolean).sort(compareAlerts);
    const target = open.length ? open[0].id : i.alert_ids[i.alert_ids.length - 1];
    return el('li', { 'data-severity': str(i.severity), 'data-incident-id': String(i.id) },
      el('span', { class: 'sev-badge', 'data-severity': str(i.severity), text: sevLabel(i.severity) }), ' ',
      el('a', { href: `/alert.html?id=${target}`, text: str(i.site_name || i.site_id) }),
      el('div', { class: 'sub', text: [i.village, t('incident_alerts', { n: i.alert_ids.length }), fmtTime(i.opened_at)].filter(Boolean).join(' · ') }));
  }));
  $('.group-n', sec).textContent = String(shown.length);
  $('.empty', sec).hidden = !!shown.length;
}

// ---------- actions ----------
async function acknowledge(id, btn) {
  if (btn) btn.disabled = true;
  try {
    const a = await api('POST', `/api/alerts/${id}/ack`, { note: '' });
    if (a && a.id === id) { applyChange({ kind: 'acknowledged', alert: a }); render(); }
  } catch (e) {
    if (e.status === 409) loadAlerts();   // acknowledged or closed meanwhile: show what is true now
    else if (e.status !== 401) showMessage(`#${id}: ${e.message}`);
  } finally { if (btn) btn.disabled = false; }
}
$('#board').addEventListener('click', (e) => {
  const btn = e.target.closest('button[data-action="ack"]'), tr = btn && btn.closest('tr[data-alert-id]');
  if (tr) acknowledge(Number(tr.dataset.alertId), btn);
});
$('#banner-ack').addEventListener('click', (e) => {
  const id = Number($('#red-banner').dataset.alertId);
  if (id) acknowledge(id, e.currentTarget);
});

// ---------- start ----------
async function start() {
  // A notification links to /#alert=ID: that is the alert's own page now.
  const linked = Number(new URLSearchParams(location.hash.slice(1)).get('alert'));
  if (linked) { location.replace(`/alert.html?id=${linked}`); return; }
  buildHead(); applyI18n(); renderSoundButton();
  const who = await topBar({ active: 'board' });
  if (who.role === 'enterprise') { location.replace(PORTAL_PAGE); return; }
  onLangChange(() => { buildHead(); fillFilterOptions(); renderSoundButton(); render(); });
  liveStream({
    onAlert: (msg) => {
      if (S.buffer) S.buffer.push(msg); else { applyChange(msg); render(); }
      incidentsSoon();
    },
    onOpen: () => { loadAlerts(); loadIncidents(); },
    onState: (s) => { S.live = s; },
  });
  loadSites();
  // Refresh relative times; poll while the stream is down.
  setInterval(() => { render(); if (S.live !== 'live') { loadAlerts(); loadIncidents(); } }, TICK_MS);
}
start().catch((e) => { if (e.status !== 401) showMessage(e.message, { sticky: true }); });
