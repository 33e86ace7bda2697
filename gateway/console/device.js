// One device: its state, newest readings, open alerts, alarm rules, and a chart per metric of
// the recent telemetry from the store (range buttons; drag to zoom).
import {
  $, api, applyI18n, el, fmtNumber, fmtTime, getLang, industryLabel, liveStream, onLangChange,
  sevLabel, showMessage, showNotFound, t, titleOf, topBar,
} from './common.js';
import { timeChart } from './chart.js';

const ID = new URLSearchParams(location.search).get('id') || '';
const RANGES = [['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 24 * 3600e3], ['7d', 7 * 86400e3]];
const POLL_MS = 15000;
const S = { detail: null, range: RANGES[1][1] };

function renderFacts() {
  const { device: d, site } = S.detail, en = getLang() === 'en';
  document.title = `${d.id} · EWG`;
  $('#d-id').textContent = d.id; $('#d-name').textContent = d.name;
  const rows = [
    ['f_profile', en ? d.profile_title_en : d.profile_title_zh],
    ['f_online', el('span', { class: 'online', 'data-online': String(d.online), text: t(d.online === true ? 'online' : d.online === false ? 'offline' : 'online_unknown') })],
    ['f_last_seen', fmtTime(d.last_seen_ms)],
    ['section_site', `${site.name} · ${site.village} · ${industryLabel(site.industry)}${site.address ? ' · ' + site.address : ''}`],
    ['f_last', el('span', { class: 'readings' }, ...d.last.map((r) => el('span', { title: fmtTime(r.ts_ms), text: `${r.metric} ${fmtNumber(r.value, r.unit)}` })))],
  ];
  $('#device-facts').replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [el('dt', { text: t(k) }), el('dd', {}, v)]));
  const alerts = S.detail.open_alerts;
  $('#open-alerts').replaceChildren(...alerts.map((a) => el('li', { 'data-severity': a.severity },
    el('span', { class: 'sev-badge', 'data-severity': a.severity, text: sevLabel(a.severity) }), ' ',
    el('a', { href: `/alert.html?id=${a.id}`, text: titleOf(a) }), ` · ${fmtTime(a.raised_at)}`)));
  $('#open-alerts-panel .empty').hidden = !!alerts.length;
  $('#rules').replaceChildren(...S.detail.rules.map((r) => el('li', {
    text: `${en ? r.title_en : r.title_zh}: ${r.metric} ${r.direction === 'above' ? '≥' : '≤'} ${r.alarm}${r.prewarning !== null ? ` (${t('threshold_prewarning')} ${r.prewarning})` : ''}`,
  })));
}
function renderRanges() {
  $('#ranges').replaceChildren(el('span', { class: 'sub', text: t('range_label') + ' ' }), ...RANGES.map(([label, ms]) => el('button', {
    type: 'button', 'data-range': label, 'aria-pressed': String(ms === S.range), text: label,
    onclick: () => { S.range = ms; renderRanges(); loadCharts(); },
  })));
}
async function loadCharts() {
  const end = Date.now() + 60e3, start = end - S.range, box = $('#charts');
  const metrics = S.detail.metrics.filter((m) => m.kind === 'number');
  const figures = metrics.map((m) => {
    let fig = box.querySelector(`figure[data-metric="${CSS.escape(m.name)}"]`);
    if (!fig) fig = el('figure', { 'data-metric': m.name }, el('figcaption'), el('div', { class: 'chart' }));
    $('figcaption', fig).textContent = `${m.description || m.name} (${m.unit})`;
    return fig;
  });
  box.replaceChildren(...figures);
  const rules = S.detail.rules;
  await Promise.all(metrics.map(async (m, i) => {
    const q = new URLSearchParams({ device_id: ID, metric: m.name, start_ms: String(start), end_ms: String(end) });
    let points = [];
    try { points = await api('GET', '/api/telemetry?' + q); } catch (e) { if (e.status !== 401) showMessage(e.message); }
    const lines = rules.filter((r) => r.metric === m.name).flatMap((r) => [
      { label: t('threshold_alarm'), value: r.alarm, color: '#e53935' },
      ...(r.prewarning !== null ? [{ label: t('threshold_prewarning'), value: r.prewarning, color: '#fb8c00' }] : []),
    ]);
    timeChart($('.chart', figures[i]), { timeLabel: t('h_time'), label: m.name, unit: m.unit, points, lines, height: 220, range: [start, end], empty: t('no_data') });
  }));
}
async function load(first = false) {
  try { S.detail = await api('GET', `/api/console/devices/${encodeURIComponent(ID)}`); }
  catch (e) { if (e.status === 404) showNotFound(); else if (e.status !== 401) showMessage(e.message); return false; }
  renderFacts();
  if (first) renderRanges();
  // A refresh must not undo the officer's zoom: charts are redrawn only while none is zoomed.
  if (first || !document.querySelector('#charts .chart[data-zoomed]')) await loadCharts();
  $('#device-page').setAttribute('aria-busy', 'false');
  return true;
}

async function start() {
  applyI18n();
  await topBar({ active: 'sites' });
  if (!ID) { showNotFound(); return; }
  if (!(await load(true))) return;
  onLangChange(() => { renderFacts(); renderRanges(); loadCharts(); });
  liveStream({ onAlert: (msg) => { if (msg.alert && msg.alert.device_id === ID) load(); }, onOpen: () => {} });
  setInterval(() => load(), POLL_MS);
}
start().catch((e) => { if (e.status !== 401) showMessage(e.message, { sticky: true }); });
