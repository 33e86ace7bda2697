// One alert: where and what, a chart of the metric around it from the store, the other sensors
// at the site, its history and notifications, and what the officer can do about it.
import {
  $, api, applyI18n, el, getLang, labelOr, fmtNumber, fmtTime, industryLabel, liveStream, onLangChange,
  sevLabel, showMessage, showNotFound, str, t, titleOf, topBar,
} from './common.js';
import { timeChart } from './chart.js';

const ID = Number(new URLSearchParams(location.search).get('id'));
const RANGES = [['30m', 30 * 60e3], ['2h', 2 * 3600e3], ['12h', 12 * 3600e3]];
const S = { who: null, ctx: null, metric: null, range: RANGES[0][1], history: [], notifications: [], policies: null };

const a = () => S.ctx.alert;
const isOpen = () => a().state !== 'closed';

// ---------- rendering ----------
function facts(dl, rows) {
  dl.replaceChildren(...rows.filter(([, v]) => v !== null && v !== undefined && v !== '').flatMap(([key, v]) => [
    el('dt', { 'data-i18n': key, text: t(key) }), el('dd', { 'data-field': key }, v instanceof Node ? v : String(v)),
  ]));
}
function onlineLabel(online) {
  return el('span', { class: 'online', 'data-online': String(online), text: t(online === true ? 'online' : online === false ? 'offline' : 'online_unknown') });
}
function readings(device) {
  return el('span', { class: 'readings' }, ...device.last.slice(0, 4).map((r) => el('span', {
    title: fmtTime(r.ts_ms), text: `${r.metric} ${fmtNumber(r.value, r.unit)}`,
  })));
}
function renderSummary() {
  const x = a();
  document.title = `#${x.id} ${titleOf(x)} · EWG`;
  $('#summary').dataset.severity = x.severity;
  $('#a-severity').dataset.severity = x.severity;
  $('#a-severity').textContent = sevLabel(x.severity);
  $('#a-title').textContent = titleOf(x);
  $('#a-id').textContent = `#${x.id}`;
  const state = $('#a-state');
  state.dataset.state = x.state;
  state.textContent = t('state_' + x.state) + (!x.acknowledged && isOpen() && x.state !== 'raised' ? ' · ' + t('unacked') : '');
  $('#a-flags').replaceChildren(...[
    x.muted ? el('span', { class: 'flag', text: t('muted') }) : null,
    x.flapping ? el('span', { class: 'flag', text: t('flapping') }) : null].filter(Boolean));
  // An enterprise user may acknowledge their own alerts; closing, silencing, the escalation
  // chain and listing a hazard are the office's (the API says 403 to them anyway).
  const staff = S.who && S.who.role !== 'enterprise';
  $('#act-ack').hidden = x.acknowledged || !isOpen();
  $('#act-close').hidden = !isOpen() || !staff;
  $('#act-silence').hidden = !isOpen() || !staff;
  $('#act-escalate').hidden = !isOpen() || !staff;
  $('#act-rectify').hidden = !staff;
}
function renderFacts() {
  const x = a(), site = S.ctx.site, dev = S.ctx.device;
  facts($('#alert-facts'), [
    ['f_class', t('class_' + x.alert_class)], ['f_hazard', x.hazard], ['f_rule', x.rule],
    ['f_value', x.value === null ? null : fmtNumber(x.value, x.unit)], ['f_count', `×${x.count}`],
    ['f_message', x.message], ['f_raised', fmtTime(x.raised_at)], ['f_updated', fmtTime(x.updated_at)],
    ['f_ack_by', x.acknowledged_by],
    // The site owner's "we are on it": shown, but not an acknowledgement (escalation goes on).
    ['f_owner_ack_by', x.owner_acknowledged_by ? `${x.owner_acknowledged_by} · ${fmtTime(x.owner_acknowledged_at)}` : null],
    ['f_cleared', fmtTime(x.cleared_at)], ['f_closed', fmtTime(x.closed_at)],
    ['f_closed_by', x.closed_by], ['f_disposition', x.disposition ? t('disp_' + x.disposition) : null],
    ['f_note', x.note], ['f_incident', x.incident_id ? `#${x.incident_id}` : null],
  ]);
  facts($('#site-facts'), [
    ['f_name', site.name], ['f_address', site.address], ['f_village', site.village],
    ['f_industry', industryLabel(site.industry)], ['f_enterprise', site.enterprise],
  ]);
  facts($('#device-facts'), [
    ['f_device', el('a', { class: 'mono', href: `/device.html?id=${encodeURIComponent(dev.id)}`, text: dev.id })],
    ['f_name', dev.name], ['f_profile', getLang() === 'en' ? dev.profile_title_en : dev.profile_title_zh],
    ['f_online', onlineLabel(dev.online)], ['f_last_seen', fmtTime(dev.last_seen_ms)], ['f_last', readings(dev)],
  ]);
}
function renderRelated() {
  const rows = S.ctx.related, tbody = $('#related tbody');
  tbody.replaceChildren(...rows.map((d) => el('tr', { 'data-device-id': d.id },
    el('td', {}, el('a', { class: 'mono', href: `/device.html?id=${encodeURIComponent(d.id)}`, text: d.id })),
    el('td', { text: d.name }), el('td', { text: getLang() === 'en' ? d.profile_title_en : d.profile_title_zh }),
    el('td', {}, onlineLabel(d.online)), el('td', {}, readings(d)))));
  $('#related').hidden = !rows.length;
  $('#related-panel .empty').hidden = !!rows.length;
}
function renderHistory() {
  const tbody = $('#history tbody');
  tbody.replaceChildren(...S.history.map((h) => el('tr', { 'data-to-state': h.to_state },
    el('td', { text: fmtTime(h.ts) }),
    el('td', { text: `${h.from_state ? t('state_' + h.from_state) + ' → ' : ''}${t('state_' + h.to_state)}` }),
    el('td', { text: h.actor }), el('td', { text: h.note }))));
  if (!S.history.length) tbody.append(el('tr', {}, el('td', { colspan: '4', class: 'sub', text: t('no_history') })));
}
function renderNotifications() {
  const tbody = $('#notifications tbody'), en = getLang() === 'en';
  tbody.replaceChildren(...S.notifications.map((n) => el('tr', { 'data-status': n.status },
    el('td', { text: fmtTime(n.created_at) }), el('td', { text: (en ? n.recipient_en : n.recipient_zh) || n.recipient }),
    el('td', { text: n.channel }), el('td', { text: labelOr('nstat_', n.status) + (n.reason ? ` (${n.reason})` : '') }),
    el('td', { text: String(n.attempts.length) }))));
  $('#notifications').hidden = !S.notifications.length;
  $('#notifications-panel .empty').hidden = !!S.notifications.length;
}

// ---------- chart ----------
function renderRanges() {
  $('#ranges').replaceChildren(el('span', { class: 'sub', text: t('range_label') + ' ' }), ...RANGES.map(([label, ms]) => el('button', {
    type: 'button', 'data-range': label, 'aria-pressed': String(ms === S.range),
    text: t('range_around', { n: label }), onclick: () => { S.range = ms; renderRanges(); loadChart(); },
  })));
  const select = $('#metric');
  select.replaceChildren(...S.ctx.metrics.filter((m) => m.kind === 'number').map((m) => el('option', {
    value: m.name, text: m.description ? `${m.description} (${m.name})` : m.name, selected: m.name === S.metric,
  })));
}
async function loadChart() {
  const x = a(), box = $('#alert-chart');
  if (!S.metric) { box.replaceChildren(el('p', { class: 'chart-empty', text: t('no_data') })); box.dataset.points = '0'; return; }
  const start = x.raised_at_ms - S.range;
  const last = Date.parse(x.closed_at || x.cleared_at || '') || Date.now();
  const end = Math.min(Date.now() + 60e3, Math.max(x.raised_at_ms + S.range, last + 60e3));
  const q = new URLSearchParams({ device_id: x.device_id, metric: S.metric, start_ms: String(start), end_ms: String(end) });
  let points = [];
  try { points = await api('GET', '/api/telemetry?' + q); } catch (e) { if (e.status !== 401) showMessage(e.message); }
  const metric = S.ctx.metrics.find((m) => m.name === S.metric), rule = S.ctx.rule;
  const lines = rule && rule.metric === S.metric ? [
    { label: t('threshold_alarm'), value: rule.alarm, color: '#e53935' },
    ...(rule.prewarning !== null ? [{ label: t('threshold_prewarning'), value: rule.prewarning, color: '#fb8c00' }] : []),
  ] : [];
  const markers = [{ ms: x.raised_at_ms, label: t('state_raised'), color: '#e53935' }];
  if (x.cleared_at) markers.push({ ms: Date.parse(x.cleared_at), label: t('state_cleared'), color: '#43a047' });
  if (x.closed_at) markers.push({ ms: Date.parse(x.closed_at), label: t('state_closed'), color: '#90caf9' });
  box.dataset.metric = S.metric;
  timeChart(box, { timeLabel: t('h_time'), label: metric ? metric.description || metric.name : S.metric, unit: metric ? metric.unit : '', points, lines, markers, range: [start, end], empty: t('no_data') });
}

// ---------- loading ----------
async function loadAll() {
  const [ctx, history, notifications] = await Promise.all([
    api('GET', `/api/console/alerts/${ID}/context`),
    api('GET', `/api/alerts/${ID}/history`),
    api('GET', `/api/alerts/${ID}/notifications`).catch((e) => { if (e.status === 403) return null; throw e; }),
  ]);
  const first = !S.ctx, changed = !first && S.ctx.alert.state !== ctx.alert.state;
  S.ctx = ctx; S.history = history;
  if (S.metric === null) S.metric = ctx.metric;
  $('#notifications-panel').hidden = notifications === null;
  S.notifications = notifications || [];
  renderSummary(); renderFacts(); renderRelated(); renderHistory(); renderNotifications();
  if (first) renderRanges();
  // Redraw the chart with the new marks (cleared, closed) unless the officer is zoomed in.
  if (first || (changed && !$('#alert-chart').dataset.zoomed)) loadChart();
  $('#alert-page').setAttribute('aria-busy', 'false');
}
async function refresh() {
  try { await loadAll(); } catch (e) { if (e.status === 404) showNotFound(); else if (e.status !== 401) showMessage(e.message); }
}

// ---------- actions ----------
function formError(form, text) {
  const p = $('.form-error', form);
  if (p) { p.textContent = text; p.hidden = !text; }
}
function dialog(id) {
  const d = $(id), form = $('form', d);
  $('.cancel', form).addEventListener('click', () => d.close());
  return { d, form, open: () => { formError(form, ''); d.showModal(); } };
}
async function act(button, call) {
  button.disabled = true;
  try { await call(); await refresh(); return true; } catch (e) {
    if (e.status === 409) await refresh();
    if (e.status !== 401) showMessage(e.message);
    return false;
  } finally { button.disabled = false; }
}
$('#act-ack').addEventListener('click', (e) => act(e.currentTarget, () => api('POST', `/api/alerts/${ID}/ack`, { note: '' })));

const closeD = dialog('#close-dialog');
$('#act-close').addEventListener('click', () => { closeD.form.reset(); closeD.open(); closeD.form.elements.disposition.focus(); });
closeD.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = closeD.form, disposition = f.elements.disposition.value;
  if (!disposition) { formError(f, t('err_choose')); f.elements.disposition.focus(); return; }
  const btn = $('.confirm', f);
  btn.disabled = true; formError(f, '');
  try {
    await api('POST', `/api/alerts/${ID}/close`, { disposition, note: f.elements.note.value.trim() });
    closeD.d.close(); await refresh();
  } catch (err) { if (err.status === 409) await refresh(); formError(f, err.message); }
  finally { btn.disabled = false; }
});
closeD.form.elements.disposition.addEventListener('change', () => formError(closeD.form, ''));

const silenceD = dialog('#silence-dialog');
$('#act-silence').addEventListener('click', () => { silenceD.form.reset(); silenceD.open(); silenceD.form.elements.reason.focus(); });
silenceD.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = silenceD.form, reason = f.elements.reason.value.trim();
  if (!reason) { f.elements.reason.focus(); return; }
  const body = { reason, duration_s: Number(f.elements.duration.value) };
  if (f.elements.scope.value === 'site') body.site_id = a().site_id; else body.device_id = a().device_id;
  try {
    const s = await api('POST', '/api/silences', body);
    silenceD.d.close(); showMessage(t('silenced_until', { t: fmtTime(s.ends_at_ms) })); await refresh();
  } catch (err) { formError(f, err.message); }
});

const escalateD = dialog('#escalate-dialog');
/** A policy matches when every list in its ``match`` holds the alert's value for that field. */
function policyMatches(p, x) {
  return Object.entries(p.match || {}).every(([k, v]) => !Array.isArray(v) || !v.length || !(k in x) || v.includes(x[k]));
}
$('#act-escalate').addEventListener('click', async () => {
  const list = $('#escalate-list'), en = getLang() === 'en';
  try { if (!S.policies) S.policies = await api('GET', '/api/escalation-policies'); } catch (e) { showMessage(e.message); return; }
  // Policies are tried in order and the first that matches is the alert's chain.
  const first = S.policies.find((p) => policyMatches(p, a()));
  const matching = first ? [first] : [];
  list.replaceChildren(...(matching.length ? matching.map((p) => el('div', { class: 'policy' },
    el('h3', { text: p.name }),
    el('ol', {}, ...p.steps.map((s) => el('li', {
      text: `${t('escalate_after', { s: s.after_s })}: ${s.notify.map((n) => `${en ? n.title_en : n.title_zh} (${n.via.join(', ')})`).join('; ')}`,
    }))))) : [el('p', { text: t('escalate_none') })]));
  $('#escalate-now').hidden = !first;
  escalateD.open();
});
// Escalate now: the chain's next step goes out at once (the API says why when it cannot).
escalateD.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const btn = $('#escalate-now'), en = getLang() === 'en';
  btn.disabled = true; formError(escalateD.form, '');
  try {
    const done = await api('POST', `/api/alerts/${ID}/escalate`);
    const [kind, n] = done.step.split(':');
    const to = [...new Set(done.notifications.map((x) => (en ? x.recipient_en : x.recipient_zh)))].join(', ');
    escalateD.d.close();
    showMessage(t(kind === 'repeat' ? 'escalate_reminder' : 'escalate_sent', { n: kind === 'repeat' ? Number(n) : Number(n) + 1, to }));
    await refresh();
  } catch (err) { if (err.status === 409) await refresh(); if (err.status !== 401) formError(escalateD.form, err.message); }
  finally { btn.disabled = false; }
});

const rectifyD = dialog('#rectify-dialog');
$('#act-rectify').addEventListener('click', () => {
  const f = rectifyD.form; f.reset();
  f.elements.assignee.value = S.ctx.site.enterprise || S.ctx.site.name;
  f.elements.deadline.value = fmtTime(Date.now() + 7 * 86400e3).slice(0, 10);
  f.elements.description.value = `${titleOf(a())} · ${S.ctx.site.name} · ${a().device_id}`;
  rectifyD.open(); f.elements.assignee.focus();
});
rectifyD.form.addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = rectifyD.form, assignee = f.elements.assignee.value.trim(), deadline = f.elements.deadline.value;
  if (!assignee) { f.elements.assignee.focus(); return; }
  if (!deadline) { f.elements.deadline.focus(); return; }
  try {
    const item = await api('POST', '/api/rectifications', {
      alert_id: ID, assignee, deadline, description: f.elements.description.value.trim(), major: f.elements.major.checked,
    });
    rectifyD.d.close(); showMessage(t('rectify_done', { id: item.id }));
  } catch (err) { formError(f, err.message); }
});

// ---------- start ----------
async function start() {
  applyI18n();
  S.who = await topBar({ active: '' });
  if (!Number.isInteger(ID) || ID < 1) { showNotFound(); return; }
  await refresh();
  if (!S.ctx) return;
  onLangChange(() => { renderSummary(); renderFacts(); renderRelated(); renderHistory(); renderNotifications(); renderRanges(); loadChart(); });
  $('#metric').addEventListener('change', (e) => { S.metric = e.target.value; loadChart(); });
  liveStream({
    onAlert: (msg) => { if (msg.alert && msg.alert.id === ID) refresh(); },
    onOpen: () => { if (S.ctx) refresh(); },
  });
}
start().catch((e) => { if (e.status !== 401) showMessage(e.message, { sticky: true }); });
