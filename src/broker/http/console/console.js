// The Rill console: polls /api/overview, keeps a short window of rates in memory, and renders
// tables and SVG charts. Every string from the broker (topic names, client ids, hosts, member ids)
// is user-controlled: it only ever reaches the page as a text node (textContent), never as HTML.
'use strict';

const pollIntervalMs = 1500;
/** Points kept per chart (3 minutes at the poll interval). */
const windowPoints = 120;
const svgNs = 'http://www.w3.org/2000/svg';

/** Groups whose rebalance history the user closed (the page is re-rendered on every poll). */
const closedHistories = new Set();
const series = { recordsIn: [], recordsOut: [], bytesIn: [], bytesOut: [], produceMs: [], fetchMs: [], otherMs: [] };
let previous = null;

/** An element with attributes and children; strings become text nodes. */
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A table row; cells from index numericFrom to numericTo (inclusive) are right-aligned numbers. */
function row(cells, numericFrom = Infinity, numericTo = Infinity) {
  return el('tr', {}, ...cells.map((cell, i) => el('td', i >= numericFrom && i <= numericTo ? { class: 'num' } : {}, cell)));
}

function formatCount(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  if (Math.abs(value) >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (Math.abs(value) >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return String(Math.round(value * 100) / 100);
}

function formatBytes(value) {
  if (value === null || value === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

function push(list, value) {
  list.push(value);
  if (list.length > windowPoints) list.shift();
}

function replaceBody(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

function renderBroker(data) {
  const b = data.broker;
  replaceBody(document.getElementById('brokers'), [
    row([b.nodeId, `${b.host}:${b.port}`, b.version, formatDuration(b.uptimeSeconds), b.ready ? 'yes' : 'no', data.totals.connectionsOpen, data.totals.requestsInFlight]),
  ]);
  const raised = Object.entries(data.alerts).filter(([, count]) => count > 0);
  document.getElementById('alerts').textContent = raised.length === 0 ? '' : `Operator alerts since start: ${raised.map(([condition, count]) => `${condition} ×${count}`).join(', ')} (see the broker log)`;
}

function renderTopics(data) {
  const rows = [];
  for (const topic of data.topics) {
    for (const p of topic.partitions) {
      rows.push(row([
        topic.name, p.partition,
        p.offline ? 'offline' : p.logStartOffset, p.offline ? 'offline' : p.logEndOffset, p.highWatermark,
        formatBytes(p.sizeBytes), formatCount(p.recordsIn), formatCount(p.recordsOut),
      ], 1));
    }
  }
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, 'no topics')));
  if (data.omitted.partitions > 0) rows.push(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, `${data.omitted.partitions} more partitions not listed`)));
  replaceBody(document.getElementById('topics'), rows);
}

function assignedText(assigned) {
  return assigned.map((tp) => `${tp.topic}[${tp.partitions.join(',')}]`).join(' ') || '–';
}

function table(headers, rows, numericFrom, numericTo = Infinity) {
  return el('table', {},
    el('thead', {}, el('tr', {}, ...headers.map((h, i) => el('th', i >= numericFrom && i <= numericTo ? { class: 'num' } : {}, h)))),
    el('tbody', {}, ...rows));
}

function renderGroup(group, nowMs) {
  const members = group.members.map((m) => row([m.memberId, m.clientId, m.host, m.state, m.memberEpoch, assignedText(m.assigned)]));
  const lag = group.offsets.map((o) => {
    const lagCell = o.lag < 0 ? el('span', { class: 'muted' }, 'no commit') : el('span', { class: o.lag > 0 ? 'lag-positive' : '' }, String(o.lag));
    return row([o.topic, o.partition, o.committedOffset < 0 ? '–' : o.committedOffset, o.endOffset, lagCell, o.owner ?? '–'], 1, 4);
  });
  const history = group.history.slice().reverse().map((event) => row([
    event.groupEpoch, `${formatDuration(Math.max(0, (nowMs - event.atMs) / 1000))} ago`, event.reason, event.memberId ?? '–', event.moves,
    event.stableAfterMs === null ? 'not yet' : `${event.stableAfterMs} ms`,
  ]));
  const totalLag = group.offsets.reduce((sum, o) => sum + (o.lag > 0 ? o.lag : 0), 0);
  return el('div', { class: 'group' },
    el('h3', {}, group.groupId, ' ', el('span', { class: `state ${group.state}` }, group.state), ' ',
      el('span', { class: 'muted' }, `${group.members.length} members · epoch ${group.groupEpoch} · total lag ${totalLag}`)),
    members.length > 0 ? table(['Member', 'Client', 'Host', 'State', 'Epoch', 'Assigned'], members, 99) : el('p', { class: 'muted' }, 'no members'),
    lag.length > 0 ? table(['Topic', 'Partition', 'Committed', 'End offset', 'Lag', 'Owner'], lag, 1, 4) : null,
    history.length > 0 ? historyDetails(group.groupId, history) : null);
}

function historyDetails(groupId, history) {
  const details = el('details', closedHistories.has(groupId) ? {} : { open: '' },
    el('summary', {}, `Rebalance history (${history.length}, newest first)`),
    table(['Epoch', 'When', 'Reason', 'Member', 'Moves', 'Stable after'], history, 99));
  details.addEventListener('toggle', () => {
    if (details.open) closedHistories.delete(groupId);
    else closedHistories.add(groupId);
  });
  return details;
}

function renderGroups(data) {
  const container = document.getElementById('groups');
  const groups = data.groups.map((group) => renderGroup(group, data.nowMs));
  if (groups.length === 0) groups.push(el('p', { class: 'muted' }, 'no consumer groups'));
  if (data.omitted.groups > 0) groups.push(el('p', { class: 'muted' }, `${data.omitted.groups} more groups not listed`));
  container.replaceChildren(...groups);
}

/** Mean latency in ms over the poll interval of the APIs `pick` selects (null when none ran). */
function meanLatencyMs(current, before, pick) {
  let count = 0;
  let sum = 0;
  for (const api of current.latency.apis) {
    if (!pick(api.api)) continue;
    const old = before.latency.apis.find((a) => a.api === api.api);
    count += api.count - (old ? old.count : 0);
    sum += api.sumSeconds - (old ? old.sumSeconds : 0);
  }
  return count > 0 ? (sum / count) * 1000 : null;
}

function recordRates(data) {
  if (previous !== null) {
    const seconds = (data.nowMs - previous.nowMs) / 1000;
    if (seconds > 0) {
      const rate = (key) => Math.max(0, (data.totals[key] - previous.totals[key]) / seconds);
      push(series.recordsIn, rate('recordsIn'));
      push(series.recordsOut, rate('recordsOut'));
      push(series.bytesIn, rate('bytesIn'));
      push(series.bytesOut, rate('bytesOut'));
      push(series.produceMs, meanLatencyMs(data, previous, (api) => api === 'Produce'));
      push(series.fetchMs, meanLatencyMs(data, previous, (api) => api === 'Fetch'));
      push(series.otherMs, meanLatencyMs(data, previous, (api) => api !== 'Produce' && api !== 'Fetch'));
    }
  }
  previous = data;
}

function polyline(values, maxValue, cssClass) {
  const line = document.createElementNS(svgNs, 'polyline');
  const points = [];
  values.forEach((value, i) => {
    if (value === null) return;
    // Until the window is full the line spans the chart; then it scrolls.
    const x = (400 * i) / Math.max(1, values.length - 1);
    const y = 118 - (value / maxValue) * 110;
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  line.setAttribute('points', points.join(' '));
  line.setAttribute('class', cssClass);
  return line;
}

function drawChart(id, lines) {
  const svg = document.getElementById(id);
  let maxValue = 0;
  for (const { values } of lines) for (const value of values) if (value !== null && value > maxValue) maxValue = value;
  if (maxValue <= 0) maxValue = 1;
  const children = [];
  for (const fraction of [0.25, 0.5, 0.75]) {
    const grid = document.createElementNS(svgNs, 'line');
    const y = 118 - fraction * 110;
    grid.setAttribute('x1', '0');
    grid.setAttribute('x2', '400');
    grid.setAttribute('y1', String(y));
    grid.setAttribute('y2', String(y));
    grid.setAttribute('class', 'grid');
    children.push(grid);
  }
  for (const { values, cssClass } of lines) children.push(polyline(values, maxValue, cssClass));
  svg.replaceChildren(...children);
  return maxValue;
}

function last(list) {
  return list.length > 0 ? list[list.length - 1] : null;
}

function renderCharts() {
  const recordsMax = drawChart('chart-records', [{ values: series.recordsIn, cssClass: 'in' }, { values: series.recordsOut, cssClass: 'out' }]);
  document.getElementById('value-records').textContent = `now: in ${formatCount(last(series.recordsIn))}/s, out ${formatCount(last(series.recordsOut))}/s · scale ${formatCount(recordsMax)}/s`;
  const bytesMax = drawChart('chart-bytes', [{ values: series.bytesIn, cssClass: 'in' }, { values: series.bytesOut, cssClass: 'out' }]);
  document.getElementById('value-bytes').textContent = `now: in ${formatBytes(last(series.bytesIn))}/s, out ${formatBytes(last(series.bytesOut))}/s · scale ${formatBytes(bytesMax)}/s`;
  // Fetch is left off the chart: its long polls (up to maxWaitMs) would flatten everything else.
  const latencyMax = drawChart('chart-latency', [{ values: series.produceMs, cssClass: 'in' }, { values: series.otherMs, cssClass: 'other' }]);
  const ms = (value) => (value === null ? '–' : `${value.toFixed(2)} ms`);
  document.getElementById('value-latency').textContent = `now: produce ${ms(last(series.produceMs))}, fetch ${ms(last(series.fetchMs))} (long polls included), others ${ms(last(series.otherMs))} · scale ${latencyMax.toFixed(2)} ms`;
}

async function poll() {
  const status = document.getElementById('status');
  try {
    const response = await fetch('/api/overview', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    recordRates(data);
    renderBroker(data);
    renderTopics(data);
    renderGroups(data);
    renderCharts();
    status.textContent = `updated ${new Date(data.nowMs).toLocaleTimeString()}`;
    status.classList.remove('down');
  } catch (error) {
    status.textContent = `broker unreachable (${error.message}); retrying`;
    status.classList.add('down');
  } finally {
    setTimeout(poll, pollIntervalMs);
  }
}

poll();
