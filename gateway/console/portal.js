// The enterprise portal: own sites and devices, registering them, each device's MQTT connection
// sheet (the secret shown once), recent telemetry, own alerts (acknowledge) and rectification
// items (answer with a note and photos). Views are chosen by the address's #/... part.
//
// It uses the console's shared module read-only (common.js: API wrapper with the session
// cookie and CSRF header, labels, times, the top bar) and its charts (chart.js, uPlot).
// The secret lives only in this page's memory (S.sheet) until the user leaves the sheet: it
// is never put in the address, in storage or in the DOM of any other view.
import {
  $, $$, el, str, t, addMessages, applyI18n, getLang, onLangChange, api, ApiError, topBar,
  fmtTime, fmtDay, fmtAgo, fmtNumber, sevLabel, titleOf, showNotFound, showMessage, liveStream,
} from './common.js';
import { timeChart } from './chart.js';

addMessages({
  zh: {
    p_title: '企业门户',
    p_nav_home: '我的场所与设备', p_nav_alerts: '我的告警', p_nav_rect: '整改事项', p_nav_register: '登记设备',
    p_sites_title: '我的场所与设备', p_add_site: '登记场所', p_add_device: '登记设备', p_add_device_here: '在此场所登记设备',
    p_no_sites: '还没有场所。请先登记场所，再为它登记设备。', p_no_devices: '该场所还没有设备。',
    p_never_seen: '尚未上报', p_sum_alerts: '未关闭告警 {n} 条（红色 {red}）', p_sum_items: '未销号整改 {n} 项（逾期 {late}）', p_sum_devices: '设备 {on} 在线 / {off} 离线', p_revoked: '已停用', p_open_alerts: '未关闭告警 {n} 条',
    // site form
    p_site_form: '登记场所', p_site_name: '场所名称', p_site_village: '所在村/社区', p_site_industry: '行业',
    p_site_address: '地址', p_site_enterprise: '所属企业', p_site_id: '场所编号（可不填，自动生成）',
    p_site_submit: '登记场所', p_site_done: '场所“{name}”已登记。',
    // device form
    p_device_form: '登记设备', p_device_site: '安装场所', p_device_profile: '设备类型',
    p_device_name: '设备名称（如：一楼配电箱）', p_device_id: '设备编号（可不填，自动生成）',
    p_device_submit: '登记并获取连接信息', p_profile_metrics: '上报指标：{list}', p_need_site: '请先登记场所。',
    // sheet
    p_sheet_title: '设备连接信息', p_sheet_for: '设备 {id}',
    p_secret_warning: '密钥只显示这一次！请立即复制并填入设备（或妥善保存）。离开本页后将无法再次查看；遗失后只能重新生成，旧密钥随即失效。',
    p_secret_gone: '密钥不再显示。如已遗失，请点击“重新生成密钥”（旧密钥立即失效）。示例命令从环境变量 EWG_DEVICE_SECRET 读取密钥。',
    p_no_accounts: '此 MQTT 服务器不要求设备账号和密钥，设备只需使用下面的客户端 ID 和主题。',
    p_leave_confirm: '密钥还没有保存？离开后将无法再次查看。确定离开吗？', p_sheet_saved: '我已保存，前往设备页', p_sheet_go: '前往设备页', p_sheet_missing: '没有待显示的密钥：密钥只在登记设备或重新生成密钥时显示一次。',
    p_f_broker: 'MQTT 服务器', p_f_host: '主机', p_f_port: '端口', p_f_tls: 'TLS 加密', p_f_client_id: '客户端 ID',
    p_f_username: '用户名', p_f_secret: '密钥（密码）', p_f_telemetry: '数据主题', p_f_event: '事件主题',
    p_f_status: '状态主题', p_f_qos: 'QoS', p_f_will: '遗嘱消息（Last Will）', p_f_payload: '示例数据',
    p_f_command: '测试命令（mosquitto_pub）', p_yes: '是', p_no: '否', p_will_text: '{topic} ← offline（保留消息）',
    p_copy: '复制', p_copied: '已复制', p_copy_failed: '复制失败，请手动选择文本复制',
    p_rotate: '重新生成密钥', p_rotate_confirm: '重新生成后旧密钥立即失效，设备需要填入新密钥才能连接。确定吗？',
    // device page
    p_device_title: '设备', p_latest: '最新读数', p_chart: '最近数据', p_range: '时间范围', p_metric: '指标',
    p_range_1h: '最近 1 小时', p_range_6h: '最近 6 小时', p_range_24h: '最近 24 小时', p_range_7d: '最近 7 天',
    p_device_alerts: '未关闭的告警', p_no_alerts: '没有未关闭的告警', p_no_closed: '最近没有关闭的告警', p_connection: '连接信息',
    // alerts
    p_alerts_title: '我的告警', p_alerts_open: '未关闭', p_alerts_closed: '最近关闭', p_ack: '确认收到',
    p_acked: '已确认（{who}）', p_ack_note: '备注（可选，如：已安排电工检查）', p_ack_done: '已确认收到。镇值班人员确认前，通知仍按升级链发送。',
    p_owner_acked: '本单位已确认收到（{who}）', p_owner_ack_by: '本单位确认', p_owner_ack_note: '镇值班人员确认前，通知仍按升级链发送。',
    p_alert_title: '告警', p_history: '状态变化',
    // rectification
    p_rect_title: '整改事项', p_no_items: '没有整改事项', p_deadline: '整改期限', p_overdue: '已逾期',
    p_rect_state_open: '待整改', p_rect_state_fix_reported: '已报告整改，待核查', p_rect_state_verified: '已销号',
    p_item_title: '整改事项', p_item_hazard: '隐患', p_item_description: '说明', p_item_assignee: '负责人',
    p_report_title: '报告整改情况', p_report_note: '整改说明（做了什么、怎么做的）', p_report_files: '照片或 PDF（可多选，手机可直接拍照）',
    p_report_submit: '提交整改报告', p_report_done: '整改报告已提交，等待监管部门核查。', p_evidence: '整改证据',
    p_sent_back: '曾被退回 {n} 次', p_end_of_day: '（当天内）', p_back: '返回企业门户',
    p_action_create: '立项', p_action_report: '报告整改', p_action_verify: '核查销号', p_action_send_back: '退回', p_action_overdue: '逾期',
  },
  en: {
    p_title: 'Enterprise portal',
    p_nav_home: 'My sites & devices', p_nav_alerts: 'My alerts', p_nav_rect: 'Rectification', p_nav_register: 'Register a device',
    p_sites_title: 'My sites and devices', p_add_site: 'Register a site', p_add_device: 'Register a device', p_add_device_here: 'Register a device here',
    p_no_sites: 'No sites yet. Register a site first, then its devices.', p_no_devices: 'No devices at this site yet.',
    p_never_seen: 'never reported', p_sum_alerts: '{n} open alerts ({red} red)', p_sum_items: '{n} rectification items open ({late} overdue)', p_sum_devices: 'devices {on} online / {off} offline', p_revoked: 'revoked', p_open_alerts: '{n} open alerts',
    p_site_form: 'Register a site', p_site_name: 'Site name', p_site_village: 'Village/community', p_site_industry: 'Industry',
    p_site_address: 'Address', p_site_enterprise: 'Enterprise', p_site_id: 'Site id (optional, generated if empty)',
    p_site_submit: 'Register site', p_site_done: 'Site “{name}” registered.',
    p_device_form: 'Register a device', p_device_site: 'Site', p_device_profile: 'Device type',
    p_device_name: 'Device name (e.g. ground-floor panel)', p_device_id: 'Device id (optional, generated if empty)',
    p_device_submit: 'Register and get connection details', p_profile_metrics: 'Reports: {list}', p_need_site: 'Register a site first.',
    p_sheet_title: 'Device connection details', p_sheet_for: 'Device {id}',
    p_secret_warning: 'The secret is shown only this once! Copy it into the device (or keep it safe) now. It cannot be shown again after you leave this page; if it is lost, generate a new one (the old one stops working).',
    p_secret_gone: 'The secret is not shown again. If it is lost, use “New secret” (the old one stops working at once). The example command reads it from the EWG_DEVICE_SECRET environment variable.',
    p_no_accounts: 'This MQTT broker needs no device account or secret: the device only needs the client id and topics below.',
    p_leave_confirm: 'Secret not saved yet? It cannot be shown again once you leave. Leave anyway?', p_sheet_saved: 'I have saved it: go to the device', p_sheet_go: 'Go to the device', p_sheet_missing: 'No secret to show: a secret is shown once, when the device is registered or given a new secret.',
    p_f_broker: 'MQTT broker', p_f_host: 'Host', p_f_port: 'Port', p_f_tls: 'TLS', p_f_client_id: 'Client id',
    p_f_username: 'Username', p_f_secret: 'Secret (password)', p_f_telemetry: 'Telemetry topic', p_f_event: 'Event topic',
    p_f_status: 'Status topic', p_f_qos: 'QoS', p_f_will: 'Last will', p_f_payload: 'Example payload',
    p_f_command: 'Test command (mosquitto_pub)', p_yes: 'yes', p_no: 'no', p_will_text: '{topic} ← offline (retained)',
    p_copy: 'Copy', p_copied: 'Copied', p_copy_failed: 'Copy failed: select the text and copy it by hand',
    p_rotate: 'New secret', p_rotate_confirm: 'The old secret stops working at once; the device needs the new one to connect. Continue?',
    p_device_title: 'Device', p_latest: 'Latest readings', p_chart: 'Recent data', p_range: 'Range', p_metric: 'Metric',
    p_range_1h: 'Last hour', p_range_6h: 'Last 6 hours', p_range_24h: 'Last 24 hours', p_range_7d: 'Last 7 days',
    p_device_alerts: 'Open alerts', p_no_alerts: 'No open alerts', p_no_closed: 'No recently closed alerts', p_connection: 'Connection details',
    p_alerts_title: 'My alerts', p_alerts_open: 'Open', p_alerts_closed: 'Recently closed', p_ack: 'Acknowledge',
    p_acked: 'Acknowledged ({who})', p_ack_note: 'Note (optional, e.g. electrician on the way)', p_ack_done: 'Acknowledged. Until the town\'s duty staff acknowledge, the escalation chain goes on.',
    p_owner_acked: 'Acknowledged by you ({who})', p_owner_ack_by: 'Acknowledged by you', p_owner_ack_note: 'Until the town\'s duty staff acknowledge, the escalation chain goes on.',
    p_alert_title: 'Alert', p_history: 'State changes',
    p_rect_title: 'Rectification items', p_no_items: 'No rectification items', p_deadline: 'Deadline', p_overdue: 'overdue',
    p_rect_state_open: 'to fix', p_rect_state_fix_reported: 'fix reported, awaiting check', p_rect_state_verified: 'struck off',
    p_item_title: 'Rectification item', p_item_hazard: 'Hazard', p_item_description: 'Description', p_item_assignee: 'Assignee',
    p_report_title: 'Report the fix', p_report_note: 'What was fixed, and how', p_report_files: 'Photos or PDF (several allowed; a phone can take a photo)',
    p_report_submit: 'Submit the fix report', p_report_done: 'Fix report submitted; the office will check it.', p_evidence: 'Evidence',
    p_sent_back: 'sent back {n} times', p_end_of_day: '(end of day)', p_back: 'Back to the portal',
    p_action_create: 'created', p_action_report: 'fix reported', p_action_verify: 'verified', p_action_send_back: 'sent back', p_action_overdue: 'overdue',
  },
});

const main = $('#view');
const REFRESH_MS = 5000;
const RANGES = { '1h': 3600e3, '6h': 6 * 3600e3, '24h': 24 * 3600e3, '7d': 7 * 86400e3 };
const S = {
  who: null, choices: null, profiles: null,
  /** {device, sheet} just issued: the only place the secret is kept, until the sheet is left. */
  sheet: null,
  notice: '',
  timers: [], charts: [], generation: 0,
};

// ---------- small helpers ----------
const lang = () => getLang();
const profileTitle = (p) => str(lang() === 'zh' ? p.title_zh || p.name : p.title_en || p.name);
const industryLabel = (code) => { const k = 'ind_' + code; const s = t(k); return s === k ? str(code) : s; };
const isMissing = (e) => e instanceof ApiError && e.status === 404;

function every(ms, fn) { S.timers.push(setInterval(fn, ms)); }
function stopTimers() {
  for (const id of S.timers) clearInterval(id);
  S.timers = [];
  for (const c of S.charts) c.destroy();
  S.charts = [];
}

async function loadProfiles() {
  if (!S.profiles) S.profiles = await api('GET', '/api/profiles');
  return S.profiles;
}
async function loadChoices() {
  if (!S.choices) S.choices = await api('GET', '/api/portal/choices');
  return S.choices;
}

/** A success note (green, unlike common.js's error bar), shown on the next view only. */
function notice(text) { S.notice = text; }

function fail(e, box) {
  const msg = e instanceof ApiError ? e.message : String(e);
  if (box) { box.textContent = t('err_generic', { msg }); box.hidden = false; } else showMessage(t('err_generic', { msg }));
}

/** Not found (or not ours: the API answers both with 404), with a way back to the portal. */
function notFound() {
  stopTimers();
  showNotFound(main);
  const back = $('#notfound a');
  if (back) { back.href = '#/'; back.dataset.i18n = 'p_back'; back.textContent = t('p_back'); }
}

async function copy(text, button) {
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch { /* not a secure context? */ }
  if (!ok) {
    const area = el('textarea', { class: 'offscreen', readonly: true });
    area.value = text; document.body.append(area); area.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    area.remove();
  }
  if (!ok) { showMessage(t('p_copy_failed')); return; }
  button.dataset.copied = 'true'; button.textContent = t('p_copied');
  setTimeout(() => { button.dataset.copied = 'false'; button.textContent = t('p_copy'); }, 2500);
}

function onlineLabel(d) {
  if (d.revoked) return el('span', { class: 'badge', dataset: { kind: 'revoked' }, text: t('p_revoked') });
  const known = d.online === true || d.online === false;
  return el('span', { class: 'online', dataset: { online: known ? String(d.online) : 'unknown' },
    text: d.online === true ? t('online') : d.online === false ? t('offline') : t('online_unknown') });
}

function readingsList(last) {
  return last.map((r) => el('span', { class: 'reading', dataset: { metric: r.metric, value: r.value } },
    `${r.metric} ${fmtNumber(r.value, r.unit)}`));
}

function joinWith(items, sep = ' · ') {
  const out = [];
  items.forEach((x, i) => { if (i) out.push(sep); out.push(x); });
  return out;
}

// Views are built anew on a language change, so their labels need no data-i18n.
function heading(key, ...extra) { return el('h2', { text: t(key) }, ...extra); }

// ---------- home: my sites and devices ----------
async function home(gen) {
  const [sites, alerts, items] = await Promise.all([
    api('GET', '/api/console/sites'),
    api('GET', '/api/alerts?state=open&limit=500'),
    api('GET', '/api/rectifications?limit=500'),
  ]);
  if (gen !== S.generation) return;
  const devices = sites.flatMap((s) => s.devices);
  const open = items.filter((i) => i.state !== 'verified');
  const summary = el('p', { class: 'summary', id: 'summary' },
    el('a', { href: '#/alerts', dataset: { count: alerts.length },
      text: t('p_sum_alerts', { n: alerts.length, red: alerts.filter((a) => a.severity === 'red').length }) }), ' · ',
    el('a', { href: '#/rectifications', dataset: { count: open.length },
      text: t('p_sum_items', { n: open.length, late: open.filter((i) => i.overdue).length }) }), ' · ',
    el('span', { text: t('p_sum_devices', { on: devices.filter((d) => d.online === true).length, off: devices.filter((d) => d.online === false).length }) }));
  const wrap = el('section', { class: 'panel', id: 'sites' },
    heading('p_sites_title'), summary,
    el('p', {}, el('a', { class: 'button', href: '#/sites/new', id: 'add-site', text: t('p_add_site') }),
      sites.length ? el('a', { class: 'button', href: '#/register', id: 'add-device', text: t('p_add_device') }) : null));
  if (!sites.length) wrap.append(el('p', { class: 'sub', id: 'no-sites', text: t('p_no_sites') }));
  const cards = el('div', { class: 'cards' });
  for (const s of sites) cards.append(siteCard(s));
  wrap.append(cards);
  main.replaceChildren(wrap);
  // Devices go on- and offline and report: redraw when anything changed.
  const seen = JSON.stringify([sites, alerts.length, open.length]);
  every(10 * 1000, async () => {
    const again = await Promise.all([api('GET', '/api/console/sites'), api('GET', '/api/alerts?state=open&limit=500'),
      api('GET', '/api/rectifications?limit=500')]).catch(() => null);
    if (!again || gen !== S.generation) return;
    const now = JSON.stringify([again[0], again[1].length, again[2].filter((i) => i.state !== 'verified').length]);
    if (now !== seen) render();
  });
}

function siteCard(s) {
  const open = s.open_alerts ? Object.values(s.open_alerts).reduce((a, b) => a + b, 0) : 0;
  const card = el('article', { class: 'panel site-card', dataset: { siteId: s.id } },
    el('h3', { text: s.name }),
    el('div', { class: 'sub' }, joinWith([s.village, industryLabel(s.industry), s.address].filter(Boolean))),
    open ? el('p', {}, el('a', { href: '#/alerts', class: 'state-label', dataset: { state: 'raised' }, text: t('p_open_alerts', { n: open }) })) : null);
  if (!s.devices.length) card.append(el('p', { class: 'sub', text: t('p_no_devices') }));
  for (const d of s.devices) {
    card.append(el('div', { class: 'device-row', dataset: { deviceId: d.id } },
      el('a', { class: 'device-link', href: '#/device/' + encodeURIComponent(d.id), text: d.name || d.id }),
      d.name ? el('span', { class: 'sub mono', text: d.id }) : null,
      el('span', { class: 'sub', text: lang() === 'zh' ? d.profile_title_zh : d.profile_title_en }),
      onlineLabel(d),
      el('span', { class: 'sub', text: d.last_seen_ms ? fmtAgo(d.last_seen_ms) : t('p_never_seen') }),
      d.last.length ? el('div', { class: 'readings' }, joinWith(readingsList(d.last))) : null));
  }
  card.append(el('p', {}, el('a', { href: '#/register?site=' + encodeURIComponent(s.id), text: t('p_add_device_here') })));
  return card;
}

// ---------- register a site ----------
async function newSite(gen) {
  const choices = await loadChoices();
  if (gen !== S.generation) return;
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true });
  const village = choices.villages.length
    ? el('select', { name: 'village', required: true },
      el('option', { value: '', text: t('choose') }), ...choices.villages.map((v) => el('option', { value: v, text: v })))
    : el('input', { name: 'village', required: true, maxlength: 100 });
  const industry = el('select', { name: 'industry', required: true },
    el('option', { value: '', text: t('choose') }),
    ...choices.industries.map((code) => el('option', { value: code, text: industryLabel(code) })));
  const form = el('form', { class: 'panel', id: 'site-form', novalidate: true },
    heading('p_site_form'), error,
    el('label', {}, el('span', { text: t('p_site_name') }), el('input', { name: 'name', required: true, maxlength: 200 })),
    el('label', {}, el('span', { text: t('p_site_village') }), village),
    el('label', {}, el('span', { text: t('p_site_industry') }), industry),
    el('label', {}, el('span', { text: t('p_site_address') }), el('input', { name: 'address', maxlength: 300 })),
    choices.enterprise === null
      ? el('label', {}, el('span', { text: t('p_site_enterprise') }), el('input', { name: 'enterprise', maxlength: 200 }))
      : null,
    el('label', {}, el('span', { text: t('p_site_id') }), el('input', { name: 'id', maxlength: 64, autocapitalize: 'off', spellcheck: 'false' })),
    el('button', { type: 'submit', class: 'primary', text: t('p_site_submit') }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = form.elements, body = {
      name: f.name.value.trim(), village: f.village.value.trim(), industry: f.industry.value,
      address: f.address.value.trim(),
    };
    if (f.id.value.trim()) body.id = f.id.value.trim();
    if (f.enterprise && f.enterprise.value.trim()) body.enterprise = f.enterprise.value.trim();
    const missing = [...form.querySelectorAll('[required]')].find((x) => !x.value.trim());
    if (missing) { missing.focus(); return; }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const site = await api('POST', '/api/portal/sites', body);
      notice(t('p_site_done', { name: site.name }));
      location.hash = '#/register?site=' + encodeURIComponent(site.id);
    } catch (e) { fail(e, error); } finally { button.disabled = false; }
  });
  main.replaceChildren(form);
  form.elements.name.focus();
}

// ---------- register a device ----------
async function register(gen, query) {
  const [sites, profiles] = await Promise.all([api('GET', '/api/console/sites'), loadProfiles()]);
  if (gen !== S.generation) return;
  if (!sites.length) {
    main.replaceChildren(el('section', { class: 'panel' }, heading('p_device_form'),
      el('p', { text: t('p_need_site') }), el('a', { class: 'button', href: '#/sites/new', text: t('p_add_site') })));
    return;
  }
  const wanted = query.get('site');
  const error = el('p', { class: 'form-error', role: 'alert', hidden: true });
  const site = el('select', { name: 'site_id', required: true },
    ...sites.map((s) => el('option', { value: s.id, selected: s.id === wanted, text: `${s.name} (${s.id})` })));
  const profile = el('select', { name: 'profile', required: true },
    el('option', { value: '', text: t('choose') }),
    ...profiles.map((p) => el('option', { value: p.name, text: `${profileTitle(p)}${p.standard ? ' — ' + p.standard : ''}` })));
  const about = el('p', { class: 'sub', id: 'profile-about' });
  profile.addEventListener('change', () => {
    const p = profiles.find((x) => x.name === profile.value);
    about.textContent = p ? t('p_profile_metrics', { list: Object.entries(p.metrics).map(([k, m]) => `${k} (${m.unit})`).join(', ') }) : '';
  });
  const form = el('form', { class: 'panel', id: 'device-form', novalidate: true },
    heading('p_device_form'), error,
    el('label', {}, el('span', { text: t('p_device_site') }), site),
    el('label', {}, el('span', { text: t('p_device_profile') }), profile), about,
    el('label', {}, el('span', { text: t('p_device_name') }), el('input', { name: 'name', maxlength: 200 })),
    el('label', {}, el('span', { text: t('p_device_id') }), el('input', { name: 'id', maxlength: 64, autocapitalize: 'off', spellcheck: 'false' })),
    el('button', { type: 'submit', class: 'primary', text: t('p_device_submit') }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    if (!f.profile.value) { f.profile.focus(); return; }
    const body = { site_id: f.site_id.value, profile: f.profile.value, name: f.name.value.trim() };
    if (f.id.value.trim()) body.id = f.id.value.trim();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const created = await api('POST', '/api/portal/devices', body);
      S.sheet = created;
      location.hash = '#/sheet';
    } catch (e) { fail(e, error); } finally { button.disabled = false; }
  });
  main.replaceChildren(form);
}

// ---------- the connection sheet ----------
function sheetRow(field, labelKey, value, { copyable = true } = {}) {
  const button = copyable
    ? el('button', { type: 'button', class: 'copy', 'data-copy': field, 'aria-label': `${t('p_copy')}: ${t(labelKey)}`, text: t('p_copy') })
    : el('span');
  if (copyable) button.addEventListener('click', () => copy(str(value), button));
  return el('div', { class: 'sheet-row', dataset: { field } },
    el('span', { class: 'label', text: t(labelKey) }), el('span', { class: 'value', text: str(value) }), button);
}

function renderSheet(sheet) {
  const box = el('div', { class: 'sheet', id: 'sheet' });
  if (sheet.secret) box.append(el('p', { class: 'warning', id: 'secret-warning', role: 'alert', text: t('p_secret_warning') }));
  else if (sheet.accounts) box.append(el('p', { class: 'sub', id: 'secret-gone', text: t('p_secret_gone') }));
  else box.append(el('p', { class: 'sub', id: 'no-accounts', text: t('p_no_accounts') }));
  box.append(
    sheetRow('broker_url', 'p_f_broker', sheet.broker_url),
    sheetRow('host', 'p_f_host', sheet.host),
    sheetRow('port', 'p_f_port', sheet.port),
    sheetRow('tls', 'p_f_tls', sheet.tls ? t('p_yes') : t('p_no'), { copyable: false }),
    sheetRow('client_id', 'p_f_client_id', sheet.client_id));
  if (sheet.accounts) box.append(sheetRow('username', 'p_f_username', sheet.username));
  if (sheet.secret) box.append(sheetRow('secret', 'p_f_secret', sheet.secret));
  box.append(
    sheetRow('telemetry_topic', 'p_f_telemetry', sheet.telemetry_topic),
    sheetRow('event_topic', 'p_f_event', sheet.event_topic),
    sheetRow('status_topic', 'p_f_status', sheet.status_topic),
    sheetRow('qos', 'p_f_qos', sheet.qos, { copyable: false }),
    sheetRow('last_will', 'p_f_will', t('p_will_text', { topic: sheet.last_will.topic }), { copyable: false }),
    sheetRow('example_payload', 'p_f_payload', sheet.example_payload),
    sheetRow('mosquitto_pub', 'p_f_command', sheet.mosquitto_pub));
  return box;
}

function sheetView() {
  if (!S.sheet) {
    main.replaceChildren(el('section', { class: 'panel' }, heading('p_sheet_title'),
      el('p', { id: 'sheet-missing', text: t('p_sheet_missing') }), el('a', { class: 'button', href: '#/', text: t('p_back') })));
    return;
  }
  const { device, sheet } = S.sheet;
  const done = el('button', { type: 'button', class: 'primary', id: 'sheet-saved', text: t(sheet.secret ? 'p_sheet_saved' : 'p_sheet_go') });
  done.addEventListener('click', () => {
    S.sheet = null;   // forget the secret: it is never shown again
    location.hash = '#/device/' + encodeURIComponent(device.id);
  });
  main.replaceChildren(el('section', { class: 'panel', id: 'sheet-panel' },
    heading('p_sheet_title', el('span', { class: 'sub', text: ' ' + t('p_sheet_for', { id: device.id }) })),
    renderSheet(sheet), el('p', {}, done)));
}

// ---------- a device ----------
async function devicePage(gen, _query, deviceId) {
  let detail, sheet;
  try {
    [detail, sheet] = await Promise.all([
      api('GET', '/api/console/devices/' + encodeURIComponent(deviceId)),
      api('GET', `/api/portal/devices/${encodeURIComponent(deviceId)}/sheet`),
    ]);
  } catch (e) { if (isMissing(e)) { notFound(); return; } throw e; }
  if (gen !== S.generation) return;
  const d = detail.device;
  const facts = el('dl', { class: 'facts', id: 'device-facts' });
  const latest = el('dd', { id: 'latest' });
  const status = el('dd', { id: 'device-online' });
  const seen = el('dd', { id: 'device-last-seen' });
  const fill = (view) => {
    status.replaceChildren(onlineLabel(view));
    seen.textContent = view.last_seen_ms ? `${fmtTime(view.last_seen_ms)} (${fmtAgo(view.last_seen_ms)})` : t('p_never_seen');
    latest.replaceChildren(...(view.last.length ? joinWith(readingsList(view.last)) : [t('p_never_seen')]));
  };
  facts.append(
    el('dt', { text: t('f_device') }), el('dd', { class: 'mono', text: d.id }),
    el('dt', { text: t('f_name') }), el('dd', { text: d.name || '—' }),
    el('dt', { text: t('f_profile') }), el('dd', { text: lang() === 'zh' ? d.profile_title_zh : d.profile_title_en }),
    el('dt', { text: t('section_site') }), el('dd', { text: `${detail.site.name} · ${detail.site.village}` }),
    el('dt', { text: t('f_online') }), status,
    el('dt', { text: t('f_last_seen') }), seen,
    el('dt', { text: t('p_latest') }), latest);
  fill(d);

  const numeric = detail.metrics.filter((m) => m.kind === 'number');
  const metric = el('select', { id: 'chart-metric' }, ...numeric.map((m) => el('option', { value: m.name, text: `${m.name} (${m.unit})` })));
  const range = el('select', { id: 'chart-range' }, ...Object.keys(RANGES).map((k) => el('option', { value: k, selected: k === '6h', text: t('p_range_' + k) })));
  const chartBox = el('div', { class: 'chart', id: 'chart' });
  const chartEmpty = el('p', { class: 'chart-empty', id: 'chart-empty', hidden: true, text: t('no_data') });
  let plotted = '';
  const drawChart = async () => {
    if (!metric.value) { chartEmpty.hidden = false; return; }
    const end = Date.now() + 60e3, start = end - RANGES[range.value];
    const q = new URLSearchParams({ device_id: d.id, metric: metric.value, start_ms: String(start), end_ms: String(end) });
    const points = await api('GET', '/api/telemetry?' + q);
    if (gen !== S.generation) return;
    const key = `${metric.value}|${range.value}|${points.length}|${points.length ? points[points.length - 1].ts_ms : 0}`;
    if (key === plotted) return;
    plotted = key;
    for (const c of S.charts) c.destroy();
    S.charts = [];
    chartEmpty.hidden = points.length > 0;
    const spec = numeric.find((m) => m.name === metric.value);
    // The profile's levels for this metric, as the duty console draws them.
    const lines = detail.rules.filter((r) => r.metric === spec.name).flatMap((r) => [
      { label: t('threshold_alarm'), value: r.alarm, color: '#e53935' },
      ...(r.prewarning !== null ? [{ label: t('threshold_prewarning'), value: r.prewarning, color: '#fb8c00' }] : []),
    ]);
    const chart = timeChart(chartBox, { timeLabel: t('h_time'), label: spec.name, unit: spec.unit, points, lines, height: 260, range: [start, end] });
    if (chart) S.charts.push(chart);
  };
  metric.addEventListener('change', () => { plotted = ''; drawChart().catch(fail); });
  range.addEventListener('change', () => { plotted = ''; drawChart().catch(fail); });

  const alertsBox = el('div', { id: 'device-alerts' });
  const fillAlerts = (alerts) => alertsBox.replaceChildren(...(alerts.length ? alerts.map(alertRow) : [el('p', { class: 'sub', text: t('p_no_alerts') })]));
  fillAlerts(detail.open_alerts);

  const rotate = el('button', { type: 'button', class: 'secondary', id: 'rotate-secret', text: t('p_rotate'), hidden: !sheet.accounts || d.revoked });
  rotate.addEventListener('click', async () => {
    if (!window.confirm(t('p_rotate_confirm'))) return;
    rotate.disabled = true;
    try {
      const fresh = await api('POST', `/api/portal/devices/${encodeURIComponent(d.id)}/secret`);
      S.sheet = { device: d, sheet: fresh };
      location.hash = '#/sheet';
    } catch (e) { fail(e); } finally { rotate.disabled = false; }
  });

  main.replaceChildren(
    el('section', { class: 'panel', id: 'device', dataset: { deviceId: d.id } },
      el('h2', {}, `${t('p_device_title')} ${d.name || d.id}`), facts),
    el('section', { class: 'panel' }, heading('p_chart'),
      el('div', { class: 'toolbar' }, el('label', {}, el('span', { text: t('p_metric') }), metric),
        el('label', {}, el('span', { text: t('p_range') }), range)),
      chartBox, chartEmpty, el('p', { class: 'sub', text: t('zoom_hint') })),
    el('section', { class: 'panel' }, heading('p_device_alerts'), alertsBox),
    el('section', { class: 'panel', id: 'connection' }, heading('p_connection'), renderSheet(sheet), el('p', {}, rotate)));
  await drawChart();
  every(REFRESH_MS, async () => {
    try {
      const again = await api('GET', '/api/console/devices/' + encodeURIComponent(d.id));
      if (gen !== S.generation) return;
      fill(again.device);
      fillAlerts(again.open_alerts);
      await drawChart();
    } catch (e) { if (isMissing(e)) notFound(); }
  });
}

// ---------- alerts ----------
function alertRow(a, { ack = false } = {}) {
  const row = el('div', { class: 'alert-row', dataset: { alertId: a.id, severity: a.severity, state: a.state } },
    el('span', { class: 'sev-badge', dataset: { severity: a.severity }, text: sevLabel(a.severity) }),
    el('span', { class: 'grow' },
      el('a', { class: 'title', href: '#/alert/' + a.id, text: titleOf(a) }),
      el('div', { class: 'sub' }, joinWith([a.site_name, a.device_id, fmtTime(a.raised_at_ms),
        a.value !== null && a.value !== undefined ? fmtNumber(a.value, a.unit) : null].filter(Boolean)))),
    el('span', { class: 'state-tag', dataset: { state: a.state }, text: t('state_' + a.state) }));
  // Our acknowledgement is the owner's ("we are on it"): recorded and shown, but the town's
  // escalation goes on until its staff acknowledge, so it does not set ``acknowledged``.
  if (ack && !a.acknowledged && !a.owner_acknowledged_by && a.state !== 'closed') {
    const b = el('button', { type: 'button', class: 'primary ack', text: t('p_ack') });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await api('POST', `/api/alerts/${a.id}/ack`, { note: '' }); notice(t('p_ack_done')); render(); } catch (e) { fail(e); b.disabled = false; }
    });
    row.append(b);
  } else if (a.acknowledged) row.append(el('span', { class: 'sub', text: t('p_acked', { who: a.acknowledged_by || '' }) }));
  else if (a.owner_acknowledged_by) row.append(el('span', { class: 'sub owner-acked', text: t('p_owner_acked', { who: a.owner_acknowledged_by }) }));
  return row;
}

async function alertsView(gen) {
  const [open, closed] = await Promise.all([
    api('GET', '/api/alerts?state=open&limit=500'),
    api('GET', '/api/alerts?state=closed&limit=20'),
  ]);
  if (gen !== S.generation) return;
  const list = (alerts, ack, empty) => (alerts.length ? alerts.map((a) => alertRow(a, { ack })) : [el('p', { class: 'sub', text: t(empty) })]);
  main.replaceChildren(
    el('section', { class: 'panel', id: 'alerts-open' }, heading('p_alerts_title', el('span', { class: 'sub', text: ' · ' + t('p_alerts_open') })), ...list(open, true, 'p_no_alerts')),
    el('section', { class: 'panel', id: 'alerts-closed' }, heading('p_alerts_closed'), ...list(closed, false, 'p_no_closed')));
}

async function alertPage(gen, _query, alertId) {
  let alert, history, context;
  try {
    [alert, history, context] = await Promise.all([api('GET', '/api/alerts/' + alertId), api('GET', `/api/alerts/${alertId}/history`),
      api('GET', `/api/console/alerts/${alertId}/context`)]);
  } catch (e) { if (isMissing(e)) { notFound(); return; } throw e; }
  if (gen !== S.generation) return;
  const facts = el('dl', { class: 'facts' },
    el('dt', { text: t('col_level') }), el('dd', {}, el('span', { class: 'sev-badge', dataset: { severity: alert.severity }, text: sevLabel(alert.severity) })),
    el('dt', { text: t('col_state') }), el('dd', {}, el('span', { class: 'state-tag', id: 'alert-state', dataset: { state: alert.state }, text: t('state_' + alert.state) })),
    el('dt', { text: t('section_site') }), el('dd', { text: `${alert.site_name} ${alert.address || ''}`.trim() }),
    el('dt', { text: t('section_device') }), el('dd', {}, el('a', { href: '#/device/' + encodeURIComponent(alert.device_id), class: 'mono', text: alert.device_id })),
    el('dt', { text: t('f_value') }), el('dd', { text: alert.value !== null ? fmtNumber(alert.value, alert.unit) : '—' }),
    el('dt', { text: t('f_raised') }), el('dd', { text: fmtTime(alert.raised_at_ms) }),
    el('dt', { text: t('f_ack_by') }), el('dd', { id: 'alert-acked-by', text: alert.acknowledged_by || '—' }),
    el('dt', { text: t('p_owner_ack_by') }), el('dd', { id: 'alert-owner-acked-by', text: alert.owner_acknowledged_by
      ? `${alert.owner_acknowledged_by} · ${fmtTime(alert.owner_acknowledged_at)}${alert.acknowledged ? '' : ' · ' + t('p_owner_ack_note')}` : '—' }),
    el('dt', { text: t('f_message') }), el('dd', { text: alert.message || '—' }));
  const hist = el('ol', { class: 'history', id: 'alert-history' },
    ...history.map((h) => el('li', {}, `${fmtTime(h.ts)} · ${h.actor} · ${h.from_state ? t('state_' + h.from_state) + ' → ' : ''}${t('state_' + h.to_state)}${h.note ? ' · ' + h.note : ''}`)));
  const section = el('section', { class: 'panel', id: 'alert', dataset: { alertId: alert.id, severity: alert.severity } },
    el('h2', {}, titleOf(alert)), facts);
  if (!alert.acknowledged && !alert.owner_acknowledged_by && alert.state !== 'closed') {
    const error = el('p', { class: 'form-error', role: 'alert', hidden: true });
    const note = el('input', { name: 'note', maxlength: 2000 });
    const form = el('form', { id: 'ack-form' }, error,
      el('label', {}, el('span', { text: t('p_ack_note') }), note),
      el('button', { type: 'submit', class: 'primary', id: 'ack-button', text: t('p_ack') }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const b = $('#ack-button'); b.disabled = true;
      try { await api('POST', `/api/alerts/${alert.id}/ack`, { note: note.value.trim() }); notice(t('p_ack_done')); render(); } catch (e) { fail(e, error); b.disabled = false; }
    });
    section.append(form);
  }
  const chart = el('div', { class: 'chart', id: 'alert-chart' });
  main.replaceChildren(section,
    context.metric ? el('section', { class: 'panel' }, heading('p_chart'), chart) : '',
    el('section', { class: 'panel' }, heading('p_history'), hist));
  if (context.metric) {
    // The metric from half an hour before the alert until now, its levels and the moment it rose.
    const start = alert.raised_at_ms - 30 * 60e3, end = Date.now() + 60e3;
    const q = new URLSearchParams({ device_id: alert.device_id, metric: context.metric, start_ms: String(start), end_ms: String(end) });
    const points = await api('GET', '/api/telemetry?' + q);
    if (gen !== S.generation) return;
    const spec = context.metrics.find((m) => m.name === context.metric) || { unit: '' };
    const r = context.rule;
    const lines = r ? [{ label: t('threshold_alarm'), value: r.alarm, color: '#e53935' },
      ...(r.prewarning !== null ? [{ label: t('threshold_prewarning'), value: r.prewarning, color: '#fb8c00' }] : [])] : [];
    const drawn = timeChart(chart, { timeLabel: t('h_time'), label: context.metric, unit: spec.unit, points, lines,
      markers: [{ ms: alert.raised_at_ms, label: t('f_raised'), color: '#e53935' }], height: 240, range: [start, end], empty: t('no_data') });
    if (drawn) S.charts.push(drawn);
  }
}

// ---------- rectification items ----------
const itemState = (s) => t('p_rect_state_' + s);
/** A deadline given as a date ends at the next midnight: show it as that date, end of day. */
function deadlineText(ms) {
  const s = fmtTime(ms);
  return s.endsWith(' 00:00:00') ? `${fmtDay(ms - 1)} ${t('p_end_of_day')}` : s;
}

async function rectifications(gen) {
  const items = await api('GET', '/api/rectifications');
  if (gen !== S.generation) return;
  const rows = items.map((i) => el('div', { class: 'item-row', dataset: { itemId: i.id, state: i.state, overdue: String(i.overdue) } },
    el('a', { class: 'title', href: '#/rectification/' + i.id, text: `#${i.id} ${i.hazard}` }), ' ',
    el('span', { class: 'state-tag', dataset: { state: i.state }, text: itemState(i.state) }),
    i.overdue ? el('span', { class: 'badge', dataset: { kind: 'revoked' }, text: ' ' + t('p_overdue') }) : null,
    el('div', { class: 'sub' }, joinWith([i.site_name, `${t('p_deadline')} ${deadlineText(i.deadline_ms)}`, i.description].filter(Boolean)))));
  main.replaceChildren(el('section', { class: 'panel', id: 'items' }, heading('p_rect_title'),
    ...(rows.length ? rows : [el('p', { class: 'sub', text: t('p_no_items') })])));
}

async function itemPage(gen, _query, itemId, done = false) {
  let item;
  try { item = await api('GET', '/api/rectifications/' + itemId); } catch (e) { if (isMissing(e)) { notFound(); return; } throw e; }
  if (gen !== S.generation) return;
  const evidence = el('div', { class: 'evidence', id: 'evidence' }, ...item.evidence.map((e) => (e.content_type.startsWith('image/')
    ? el('a', { href: e.url, title: e.filename }, el('img', { src: e.url, alt: e.filename, loading: 'lazy' }))
    : el('a', { href: e.url, text: e.filename }))));
  const history = el('ol', { class: 'history', id: 'item-history' }, ...item.history.map((h) => el('li', {},
    `${fmtTime(h.ts_ms)} · ${h.actor} · ${t('p_action_' + h.action)}${h.note ? ' · ' + h.note : ''}`)));
  const section = el('section', { class: 'panel', id: 'item', dataset: { itemId: item.id, state: item.state } },
    el('h2', {}, `${t('p_item_title')} #${item.id}`),
    done ? el('p', { class: 'done', id: 'report-done', role: 'status', text: t('p_report_done') }) : null,
    el('dl', { class: 'facts' },
      el('dt', { text: t('p_item_hazard') }), el('dd', { text: item.hazard }),
      el('dt', { text: t('col_state') }), el('dd', {}, el('span', { class: 'state-tag', id: 'item-state', dataset: { state: item.state }, text: itemState(item.state) }),
        item.overdue ? ' ' + t('p_overdue') : '', item.sent_back ? ' · ' + t('p_sent_back', { n: item.sent_back }) : ''),
      el('dt', { text: t('section_site') }), el('dd', { text: item.site_name }),
      el('dt', { text: t('p_deadline') }), el('dd', { text: deadlineText(item.deadline_ms) }),
      el('dt', { text: t('p_item_assignee') }), el('dd', { text: item.assignee }),
      el('dt', { text: t('p_item_description') }), el('dd', { text: item.description || '—' }),
      item.alert_id ? el('dt', { text: t('p_alert_title') }) : null,
      item.alert_id ? el('dd', {}, el('a', { href: '#/alert/' + item.alert_id, text: '#' + item.alert_id })) : null));
  if (item.state === 'open') {
    const error = el('p', { class: 'form-error', role: 'alert', hidden: true });
    const form = el('form', { id: 'report-form', class: 'report' }, el('h3', { text: t('p_report_title') }), error,
      el('label', {}, el('span', { text: t('p_report_note') }), el('textarea', { name: 'note', rows: 3, required: true, maxlength: 4000 })),
      el('label', {}, el('span', { text: t('p_report_files') }), el('input', { name: 'files', type: 'file', multiple: true, accept: 'image/jpeg,image/png,image/webp,application/pdf' })),
      el('button', { type: 'submit', class: 'primary', id: 'report-submit', text: t('p_report_submit') }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!form.elements.note.value.trim()) { form.elements.note.focus(); return; }
      const b = $('#report-submit'); b.disabled = true;
      try {
        await api('POST', `/api/rectifications/${item.id}/report`, new FormData(form));
        await itemPage(gen, _query, itemId, true);
      } catch (e) { fail(e, error); b.disabled = false; }
    });
    section.append(form);
  }
  main.replaceChildren(section,
    el('section', { class: 'panel' }, heading('p_evidence'), item.evidence.length ? evidence : el('p', { class: 'sub', text: t('none') })),
    el('section', { class: 'panel' }, heading('p_history'), history));
}

// ---------- routing ----------
const ROUTES = [
  [/^\/?$/, 'home', home],
  [/^\/sites\/new$/, 'register', newSite],
  [/^\/register$/, 'register', register],
  [/^\/sheet$/, 'register', sheetView],
  [/^\/device\/([^/]+)$/, 'home', devicePage],
  [/^\/alerts$/, 'alerts', alertsView],
  [/^\/alert\/(\d+)$/, 'alerts', alertPage],
  [/^\/rectifications$/, 'rectifications', rectifications],
  [/^\/rectification\/(\d+)$/, 'rectifications', itemPage],
];

async function render() {
  const [path, search = ''] = decodeURIComponent(location.hash.replace(/^#/, '')).split('?');
  if (path !== '/sheet' && S.sheet && S.sheet.sheet.secret && !window.confirm(t('p_leave_confirm'))) {
    history.replaceState(null, '', '#/sheet');   // stay: the secret is still needed
    return;
  }
  if (path !== '/sheet') S.sheet = null;   // leaving the sheet forgets the secret
  stopTimers();
  const gen = ++S.generation;
  const route = ROUTES.map(([re, nav, view]) => [path.match(re), nav, view]).find(([m]) => m);
  if (!route) { notFound(); return; }
  const [match, nav, view] = route;
  for (const a of $$('#portal-nav a')) a.setAttribute('aria-current', a.dataset.view === nav ? 'page' : 'false');
  document.body.dataset.view = view.name;
  delete document.body.dataset.notFound;
  const note = $('#notice');
  note.textContent = S.notice; note.hidden = !S.notice;
  S.notice = '';
  try {
    await view(gen, new URLSearchParams(search), ...match.slice(1));
  } catch (e) { if (gen === S.generation) fail(e); }
}

async function start() {
  S.who = await topBar({ active: 'portal' });
  document.title = `EWG ${t('p_title')}`;
  applyI18n();
  window.addEventListener('hashchange', render);
  // Closing or reloading the tab while the secret is on screen loses it for good: ask first.
  window.addEventListener('beforeunload', (ev) => { if (S.sheet && S.sheet.sheet.secret) ev.preventDefault(); });
  onLangChange(() => { document.title = `EWG ${t('p_title')}`; render(); });
  // Alerts of the caller's sites only (the stream is cut to the session's scope): refresh the
  // lists that show them.
  let pending = null;
  liveStream({
    onAlert: () => {
      if (!['home', 'alertsView'].includes(document.body.dataset.view)) return;
      clearTimeout(pending); pending = setTimeout(render, 300);
    },
  });
  await render();
}

start().catch((e) => { if (!(e instanceof ApiError && e.status === 401)) fail(e); });
