// Sites by village/community: each site's devices with online/offline state and newest reading,
// and its open alerts by colour. Refreshed when an alert changes and every 30 s.
import {
  $, api, applyI18n, el, fmtAgo, fmtNumber, fmtTime, getLang, industryLabel, liveStream, onLangChange,
  SEVERITIES, sevLabel, showMessage, str, t, topBar,
} from './common.js';

const REFRESH_MS = 30000;
const S = { sites: [], timer: null };

function village() { return new URLSearchParams(location.search).get('village') || ''; }

function deviceRow(d) {
  const en = getLang() === 'en', first = d.last[0];
  return el('tr', { 'data-device-id': d.id, 'data-online': String(d.online) },
    el('td', {}, el('a', { class: 'mono', href: `/device.html?id=${encodeURIComponent(d.id)}`, text: d.id })),
    el('td', { text: d.name }),
    el('td', { text: en ? d.profile_title_en : d.profile_title_zh }),
    el('td', {}, el('span', { class: 'online', 'data-online': String(d.online), text: t(d.online === true ? 'online' : d.online === false ? 'offline' : 'online_unknown') })),
    el('td', { class: 'last-reading' }, first ? el('span', { class: 'num', text: `${first.metric} ${fmtNumber(first.value, first.unit)}` }) : '—',
      first ? el('div', { class: 'sub', text: `${fmtTime(first.ts_ms)} · ${fmtAgo(first.ts_ms)}` }) : null),
  );
}
function siteCard(s) {
  const worst = SEVERITIES.find((sev) => s.open_alerts[sev] > 0);
  return el('section', { class: 'panel site-card', 'data-site-id': s.id, 'data-severity': worst || null },
    el('h3', { text: s.name }),
    el('p', { class: 'sub', text: [s.address, industryLabel(s.industry), s.enterprise].filter(Boolean).join(' · ') }),
    el('p', { class: 'alert-counts' },
      el('span', { class: 'sub', text: t('open_alerts') + ': ' }),
      ...SEVERITIES.filter((sev) => s.open_alerts[sev]).map((sev) => el('span', { class: 'sev-badge', 'data-severity': sev, text: `${sevLabel(sev)} ${s.open_alerts[sev]}` })),
      SEVERITIES.some((sev) => s.open_alerts[sev]) ? null : el('span', { text: t('none') }),
      el('span', { class: 'sub', text: ` · ${t('devices_online', { n: s.devices_online })} · ${t('devices_offline', { n: s.devices_offline })}` })),
    el('div', { class: 'table-wrap' }, el('table', { class: 'devices' },
      el('thead', {}, el('tr', {}, ...['f_device', 'f_name', 'f_profile', 'f_online', 'f_last'].map((k) => el('th', { text: t(k) })))),
      el('tbody', {}, ...s.devices.map(deviceRow)))));
}
function render() {
  const v = village(), box = $('#villages'), select = $('#sites-filter').elements.village;
  const all = [...new Set(S.sites.map((s) => s.village))].sort((a, b) => a.localeCompare(b, 'zh-CN'));
  select.replaceChildren(select.options[0], ...all.map((x) => el('option', { value: x, text: x, selected: x === v })));
  select.value = v;
  const shown = S.sites.filter((s) => !v || s.village === v);
  const groups = new Map();
  for (const s of shown) { if (!groups.has(s.village)) groups.set(s.village, []); groups.get(s.village).push(s); }
  box.replaceChildren(...[...groups].map(([name, sites]) => el('section', { class: 'village', 'data-village': name },
    el('h2', {}, str(name), el('span', { class: 'sub', text: ` (${sites.length})` })), ...sites.map(siteCard))));
  $('#sites-page .empty').hidden = !!shown.length;
}
async function load() {
  try { S.sites = await api('GET', '/api/console/sites'); render(); }
  catch (e) { if (e.status !== 401) showMessage(e.message); }
  $('#sites-page').setAttribute('aria-busy', 'false');
}
// During an alert storm the list is reloaded at most every few seconds, not per alert.
function loadSoon() { if (!S.timer) S.timer = setTimeout(() => { S.timer = null; load(); }, 3000); }

$('#sites-filter').addEventListener('change', (e) => {
  const q = new URLSearchParams(location.search);
  if (e.target.value) q.set('village', e.target.value); else q.delete('village');
  history.replaceState(null, '', location.pathname + (q.toString() ? '?' + q : ''));
  render();
});

async function start() {
  applyI18n();
  await topBar({ active: 'sites' });
  onLangChange(render);
  await load();
  liveStream({ onAlert: loadSoon, onOpen: loadSoon });
  setInterval(load, REFRESH_MS);
}
start().catch((e) => { if (e.status !== 401) showMessage(e.message, { sticky: true }); });
