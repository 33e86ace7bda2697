// Charts through uPlot (vendor/uplot, MIT): time series with drag-to-zoom (double-click
// resets), and grouped bars for the statistics. Times are drawn in Asia/Shanghai. Each chart's
// container says how many points it drew (data-points) and which range it shows
// (data-min-ms/data-max-ms after a zoom), so a test can see what the officer sees.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { fmtNumber, fmtTime, TIMEZONE } from './common.js';

const AXIS = { stroke: '#c2cad6', grid: { stroke: '#313946', width: 1 }, ticks: { stroke: '#313946' } };
export const PALETTE = ['#4fc3f7', '#ffb74d', '#aed581', '#f06292', '#ba68c8', '#fff176'];
const tzDate = (ts) => uPlot.tzDate(new Date(ts), TIMEZONE);

/** 24-hour tick labels in the town's zone: "17:05", with the date where the day changes. */
function timeTicks(u, splits) {
  let day = '';
  const seconds = splits.length > 1 && splits[1] - splits[0] < 60e3;
  return splits.map((v) => {
    const s = fmtTime(v), d = s.slice(5, 10), hm = s.slice(11, seconds ? 19 : 16);
    const label = d !== day ? `${hm}\n${d}` : hm;
    day = d;
    return label;
  });
}
function sizeOf(container, height) {
  return { width: Math.max(200, Math.floor(container.clientWidth || 600)), height };
}
function keepSized(container, chart, height) {
  const ro = new ResizeObserver(() => chart.setSize(sizeOf(container, height)));
  ro.observe(container);
  container.chartCleanup_ = () => { ro.disconnect(); chart.destroy(); };
}
function reset(container) {
  delete container.dataset.zoomed;
  if (container.chartCleanup_) container.chartCleanup_();
  container.chartCleanup_ = null;
  container.replaceChildren();
}

/**
 * A line chart of one metric over time.
 * ``points``: [{ts_ms, value}] oldest first; ``lines``: horizontal levels [{label, value, color}];
 * ``markers``: vertical lines [{ms, label, color}]; ``onZoom(minMs, maxMs)`` after a drag-select.
 */
export function timeChart(container, { label, timeLabel = '', unit = '', points, lines = [], markers = [], height = 280, range = null, onZoom = null, empty = '' }) {
  reset(container);
  container.classList.add('chart');
  container.dataset.points = String(points.length);
  if (!points.length) {
    container.append(Object.assign(document.createElement('p'), { className: 'chart-empty', textContent: empty }));
    return null;
  }
  const xs = points.map((p) => p.ts_ms);
  // A range that starts long before the first reading (a new device) would squeeze every point
  // against the right edge: start shortly before the first reading (or marker) instead.
  if (range) {
    const first = Math.min(xs[0], ...markers.map((m) => m.ms));
    const pad = Math.max(60e3, (range[1] - first) * 0.05);
    if (first - pad > range[0]) range = [first - pad, range[1]];
  }
  // The chart spans the whole range (and the levels run across it), not only the readings:
  // the range's ends are x values where the readings have none. The x scale is then simply
  // the data's extent, so a drag zooms in and a double-click goes back to exactly this range.
  const values = points.map((p) => p.value);
  if (range) {
    if (range[0] < xs[0]) { xs.unshift(range[0]); values.unshift(null); }
    if (range[1] > xs[xs.length - 1]) { xs.push(range[1]); values.push(null); }
  }
  const data = [xs, values, ...lines.map((l) => xs.map(() => l.value))];
  const series = [
    { label: timeLabel, value: (u, v) => (v == null ? '' : fmtTime(v)) },
    { label: unit ? `${label} (${unit})` : label, stroke: PALETTE[0], width: 2, points: { show: points.length < 60 },
      value: (u, v) => (v == null ? '' : fmtNumber(v, unit)) },
    ...lines.map((l) => ({ label: `${l.label} ${fmtNumber(l.value, unit)}`, stroke: l.color, width: 1.5, dash: [8, 6], points: { show: false } })),
  ];
  const opts = {
    ...sizeOf(container, height), ms: 1, tzDate,
    series,
    axes: [{ ...AXIS, space: 70, values: timeTicks }, { ...AXIS, size: 60, values: (u, vals) => vals.map((v) => fmtNumber(v)) }],
    scales: { x: { time: true } },
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        ctx.save();
        for (const m of markers) {
          const x = u.valToPos(m.ms, 'x', true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.strokeStyle = m.color || '#e53935'; ctx.lineWidth = 2 * devicePixelRatio; ctx.setLineDash([]);
          ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
          ctx.fillStyle = m.color || '#e53935'; ctx.font = `${12 * devicePixelRatio}px sans-serif`;
          ctx.fillText(m.label || '', x + 4 * devicePixelRatio, u.bbox.top + 14 * devicePixelRatio);
        }
        ctx.restore();
      }],
      setScale: [(u, key) => {
        if (key !== 'x') return;
        const { min, max } = u.scales.x;
        container.dataset.minMs = String(Math.round(min)); container.dataset.maxMs = String(Math.round(max));
      }],
      setSelect: [(u) => {
        if (u.select.width < 5) return;
        container.dataset.zoomed = 'true';   // a page refreshing its charts leaves this one be
        if (!onZoom) return;
        onZoom(Math.round(u.posToVal(u.select.left, 'x')), Math.round(u.posToVal(u.select.left + u.select.width, 'x')));
      }],
    },
  };
  const chart = new uPlot(opts, data, container);
  keepSized(container, chart, height);
  container.ondblclick = () => { delete container.dataset.zoomed; };   // uPlot resets the zoom
  return chart;
}

/** Grouped bars: one group per category, one bar per series [{label, values, color}]. */
export function barChart(container, { categories, series, height = 300, percent = false, groupLabel = '' }) {
  reset(container);
  container.classList.add('chart');
  container.dataset.points = String(categories.length);
  if (!categories.length) return null;
  const xs = categories.map((_, i) => i);
  const n = series.length, fmt = (v) => (v == null ? '' : percent ? `${Math.round(v * 1000) / 10}%` : fmtNumber(v));
  const bars = uPlot.paths.bars;
  const opts = {
    ...sizeOf(container, height),
    series: [
      { label: groupLabel, value: (u, i) => (i == null ? '' : categories[i] ?? '') },
      ...series.map((s, k) => ({
        label: s.label, stroke: s.color || PALETTE[k], fill: (s.color || PALETTE[k]) + 'cc', width: 1,
        // Bar k of each group starts at i - 0.4 + k·w and is w wide (x-scale units).
        paths: bars({ disp: { x0: { unit: 1, values: () => xs.map((i) => i - 0.4 + k * (0.8 / n)) }, size: { unit: 1, values: () => [0.8 / n] } } }),
        points: { show: false }, value: (u, v) => fmt(v),
      })),
    ],
    scales: { x: { time: false, range: [-0.6, categories.length - 0.4] }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [
      { ...AXIS, splits: () => xs, values: (u, vals) => vals.map((v) => categories[v] ?? ''), grid: { show: false } },
      { ...AXIS, size: 60, values: (u, vals) => vals.map(fmt), ...(percent ? {} : { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] }) },
    ],
    cursor: { drag: { x: false, y: false } },
  };
  const chart = new uPlot(opts, [xs, ...series.map((s) => s.values)], container);
  keepSized(container, chart, height);
  return chart;
}
