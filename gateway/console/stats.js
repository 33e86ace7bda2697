// Statistics by village/community or industry over a period (definitions in alerts/stats.py):
// charts, the table, the sites to follow up, and CSV export of the same report.
import { $, api, applyI18n, el, fmtDay, industryLabel, onLangChange, showMessage, t, topBar } from './common.js';
import { barChart, PALETTE } from './chart.js';

const COLS = [
  ['s_group', (g) => g.label], ['s_sites', (g) => g.sites], ['s_devices', (g) => g.devices], ['s_offline', (g) => g.devices_offline],
  ['s_alerts', (g) => g.alerts], ['s_hazard', (g) => g.alerts_by_class.hazard ?? 0], ['s_fault', (g) => g.alerts_by_class.fault ?? 0],
  ['s_ack_median', (g) => dur(g.time_to_acknowledge.median_s)], ['s_close_median', (g) => dur(g.time_to_close.median_s)],
  ['s_false', (g) => g.false_alarms], ['s_false_rate', (g) => pct(g.false_alarm_rate)],
  ['s_rect_open', (g) => g.rectifications_open], ['s_rect_overdue', (g) => g.rectifications_overdue],
];
const S = { report: null, flagged: null };

function dur(s) {
  if (s === null || s === undefined) return '—';
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}
const pct = (r) => (r === null || r === undefined ? '—' : `${Math.round(r * 1000) / 10}%`);

function params() {
  const f = $('#stats-form').elements, q = new URLSearchParams({ group_by: f.group_by.value });
  if (f.since.value) q.set('since', f.since.value);
  if (f.until.value) q.set('until', f.until.value);
  return q;
}
function render() {
  const r = S.report; if (!r) return;
  const label = (key) => (r.group_by === 'industry' ? industryLabel(key) : key);
  const groups = r.groups.map((g) => ({ ...g, label: label(g.key) }));
  $('#period').textContent = `${r.since.slice(0, 16).replace('T', ' ')} — ${r.until.slice(0, 16).replace('T', ' ')} (${r.timezone})`;
  barChart($('#chart-alerts'), {
    groupLabel: t('s_group'), categories: groups.map((g) => g.label),
    series: [{ label: t('s_hazard'), values: groups.map((g) => g.alerts_by_class.hazard ?? 0), color: '#e53935' },
      { label: t('s_fault'), values: groups.map((g) => g.alerts_by_class.fault ?? 0), color: '#90a4ae' }],
  });
  barChart($('#chart-false'), {
    groupLabel: t('s_group'), categories: groups.map((g) => g.label), percent: true,
    series: [{ label: t('s_false_rate'), values: groups.map((g) => g.false_alarm_rate), color: PALETTE[1] }],
  });
  const table = $('#stats-table');
  $('thead', table).replaceChildren(el('tr', {}, ...COLS.map(([k], i) => el('th', { class: i ? 'n' : null, text: t(k) }))));
  const row = (g, cls) => el('tr', { class: cls, 'data-group': g.key }, ...COLS.map(([, f], i) => el('td', { class: i ? 'n' : null, text: String(f(g)) })));
  $('tbody', table).replaceChildren(...groups.map((g) => row(g)), row({ ...r.total, label: t('s_total') }, 'total'));
  const fl = S.flagged;
  $('#flagged-title').textContent = t('flagged_title', { n: fl ? fl.limit : 5 });
  $('#flagged').replaceChildren(...(fl && fl.days.length ? fl.days.map((d) => el('li', {
    text: `${d.day} · ${d.name} (${d.village}) · ${t('s_false')} ${d.false_alarms}`,
  })) : [el('li', { class: 'sub', text: t('flagged_none') })]));
}
async function load() {
  const q = params();
  $('#csv-groups').href = '/api/stats.csv?' + q;
  const qs = new URLSearchParams(q); qs.set('table', 'sites');
  $('#csv-sites').href = '/api/stats.csv?' + qs;
  const fq = new URLSearchParams(q); fq.delete('group_by');
  try {
    [S.report, S.flagged] = await Promise.all([api('GET', '/api/stats?' + q), api('GET', '/api/stats/false-alarms?' + fq)]);
    render();
  } catch (e) { if (e.status !== 401) showMessage(e.message); }
  $('#stats-page').setAttribute('aria-busy', 'false');
}
$('#stats-form').addEventListener('submit', (e) => { e.preventDefault(); load(); });
$('#stats-form').elements.group_by.addEventListener('change', load);

async function start() {
  applyI18n();
  await topBar({ active: 'stats' });
  const f = $('#stats-form').elements;
  f.until.value = fmtDay(Date.now());
  f.since.value = fmtDay(Date.now() - 29 * 86400e3);
  onLangChange(render);
  await load();
}
start().catch((e) => { if (e.status !== 401) showMessage(e.message, { sticky: true }); });
