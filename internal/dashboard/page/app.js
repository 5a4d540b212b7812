// The dashboard page: reads GET /v1/dashboard every two seconds and looks
// tickets up with GET /v1/tickets/{id}/explain. A token, when the
// deployment needs one, is kept in this tab's sessionStorage and sent only
// in the Authorization header, never in a URL. Everything shown is set as
// text, never as markup.
'use strict';

const tokenKey = 'quickmatch.dashboard.token';
const every = 2000;

function headers() {
  const token = sessionStorage.getItem(tokenKey);
  return token ? { Authorization: 'Bearer ' + token } : {};
}

// getJSON answers the decoded body, or throws an Error saying what the
// problem details said.
async function getJSON(path) {
  const resp = await fetch(path, { headers: headers(), cache: 'no-store' });
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    const err = new Error(problemText(resp.status, body));
    err.status = resp.status;
    err.problem = body;
    throw err;
  }
  return body;
}

function problemText(status, p) {
  if (status === 401) return 'this deployment needs a token: paste a service token above';
  if (status === 403) return 'the token may not read this (a service token is needed)';
  if (p && p.code) return p.code + (p.detail ? ': ' + p.detail : '') + ' (' + status + ')';
  return 'HTTP ' + status;
}

// el makes an element with attributes and children (strings become text).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function secs(s) {
  if (s === null || s === undefined) return '–';
  if (s < 10) return s.toFixed(1) + ' s';
  if (s < 120) return Math.round(s) + ' s';
  return (s / 60).toFixed(1) + ' min';
}

function perSecond(v) { return v === null || v === undefined ? '–' : v.toFixed(2) + '/s'; }

function pct(p) { return p ? secs(p.p50) + ' / ' + secs(p.p90) + ' / ' + secs(p.max) : '–'; }

function figure(label, value, name) {
  return el('div', { 'data-figure': name }, el('dt', {}, label), el('dd', {}, value));
}

function renderQueue(q) {
  const recent = q.recent_waits ? secs(q.recent_waits.p50) + ' / ' + secs(q.recent_waits.p90) + ' / ' + secs(q.recent_waits.p99) : '–';
  const figures = el('dl', { class: 'figures' },
    figure('searching', q.searching, 'searching'),
    figure('in the pool', q.pooled + (q.pool_truncated ? ' (more than shown)' : ''), 'pooled'),
    figure('matches waiting for a server', q.waiting_for_server, 'waiting_for_server'),
    figure('matches', perSecond(q.matches_per_second), 'matches_per_second'),
    figure('leaving the pool', perSecond(q.pool_departures_per_second), 'pool_departures_per_second'),
    figure('waited so far p50 / p90 / max', pct(q.waiting_now), 'waiting_now'),
    figure('recent waits p50 / p90 / p99', recent, 'recent_waits'));
  let bands;
  if (q.bands.length === 0) {
    bands = el('p', { class: 'none' }, 'No ticket in the pool.');
  } else {
    const most = Math.max(...q.bands.map(b => b.tickets));
    const body = el('tbody', {});
    for (const b of q.bands) {
      const regions = Object.entries(b.regions).map(([r, n]) => r + ' ' + n).join(', ');
      body.append(el('tr', { 'data-band': b.from },
        el('td', {}, b.from + '–' + b.to),
        el('td', {}, el('meter', { min: 0, max: most, value: b.tickets }), ' ', b.tickets),
        el('td', {}, b.players),
        el('td', {}, regions)));
    }
    bands = el('table', { class: 'bands' },
      el('thead', {}, el('tr', {}, el('th', {}, 'skill'), el('th', {}, 'tickets'), el('th', {}, 'players'), el('th', {}, 'best region'))),
      body);
  }
  return el('div', { class: 'queue', 'data-queue': q.name },
    el('h3', {}, q.name + ' ', el('small', {}, '(' + q.players_per_match + ' players a match)')), figures, bands);
}

function render(d) {
  document.getElementById('queues').replaceChildren(...d.queues.map(renderQueue));
  const rows = d.regions.map(r => el('tr', { 'data-region': r.name },
    el('td', {}, r.name), el('td', {}, r.servers), el('td', {}, r.live), el('td', {}, r.draining), el('td', {}, r.free_slots)));
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: 5, class: 'none' }, 'No game server has registered.')));
  document.querySelector('#servers tbody').replaceChildren(...rows);
}

function setStatus(text, isError) {
  const s = document.getElementById('status');
  s.textContent = text;
  s.className = isError ? 'error' : '';
}

let timer = null;

// refresh reads the figures now, and again every two seconds.
async function refresh() {
  clearTimeout(timer);
  try {
    const d = await getJSON('/v1/dashboard');
    render(d);
    setStatus('as of ' + new Date(d.at).toLocaleTimeString(), false);
  } catch (e) {
    setStatus(e.message, true);
  }
  clearTimeout(timer);
  timer = setTimeout(refresh, every);
}

function renderExplanation(x) {
  const out = [];
  out.push(el('dl', { class: 'figures' },
    figure('ticket', x.ticket_id, 'ticket_id'),
    figure('queue', x.queue, 'queue'),
    figure('status', x.status, 'status'),
    figure('waited', secs(x.waited_seconds), 'waited'),
    figure('matching skill', x.skill, 'skill'),
    figure('skill window', '± ' + x.skill_window, 'skill_window'),
    figure('latency limit', x.latency_limit_ms === undefined ? 'none' : x.latency_limit_ms + ' ms', 'latency_limit'),
    figure('players a match needs', x.players_needed, 'players_needed'),
    figure('in reach', x.in_reach ? x.in_reach.tickets + ' tickets, ' + x.in_reach.players + ' players' + (x.in_reach.capped ? ' or more' : '') : '–', 'in_reach'),
    figure('estimate', x.estimate ? 'about ' + secs(x.estimate.remaining_seconds) + ' more (90 %: ' + secs(x.estimate.p90_remaining_seconds) + '), from ' + x.estimate.based_on + ' tickets' : 'none yet', 'estimate')));
  const blockers = el('ul', { class: 'blockers', id: 'blockers' });
  for (const b of x.blockers) blockers.append(el('li', { 'data-code': b.code }, el('code', {}, b.code), ': ' + b.detail));
  if (x.blockers.length === 0) blockers.append(el('li', { class: 'none' }, 'Nothing the front can see is in the way.'));
  if (x.window_covers_in_seconds !== undefined) {
    blockers.append(el('li', { class: 'none' }, 'The skill window reaches enough of the tickets waiting now in ' + secs(x.window_covers_in_seconds) + '.'));
  }
  out.push(el('h3', {}, 'In the way'), blockers);
  if (x.nearest.length > 0) {
    const body = el('tbody', {});
    for (const n of x.nearest) {
      body.append(el('tr', {}, el('td', {}, n.skill_gap), el('td', {}, n.players), el('td', {}, secs(n.waited_seconds)), el('td', {}, n.in_window ? 'yes' : 'no')));
    }
    out.push(el('h3', {}, 'Nearest in skill'), el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, 'skill gap'), el('th', {}, 'players'), el('th', {}, 'waited'), el('th', {}, 'in window'))), body));
  }
  if (x.regions.length > 0) {
    const body = el('tbody', {});
    for (const r of x.regions) {
      body.append(el('tr', {}, el('td', {}, r.region), el('td', {}, r.latency_ms === undefined ? '–' : r.latency_ms + ' ms'),
        el('td', {}, r.accepted ? 'yes' : 'no'), el('td', {}, r.players_in_window), el('td', {}, r.free_slots)));
    }
    out.push(el('h3', {}, 'Regions'), el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, 'region'), el('th', {}, 'latency'), el('th', {}, 'takes it now'), el('th', {}, 'players in window'), el('th', {}, 'free slots'))), body));
  }
  return out;
}

async function lookup(id) {
  const box = document.getElementById('explanation');
  box.replaceChildren(el('p', { class: 'none' }, 'looking up…'));
  try {
    const x = await getJSON('/v1/tickets/' + encodeURIComponent(id) + '/explain');
    box.replaceChildren(...renderExplanation(x));
  } catch (e) {
    let text = e.message;
    if (e.status === 404) {
      // The router's own 404 names no ticket: this process has no front.
      text = e.problem && e.problem.detail === 'no such route'
        ? 'This process serves no ticket lookups: open the dashboard of a front.'
        : 'No such ticket (or not one this token may see).';
    }
    box.replaceChildren(el('p', { class: 'error' }, text));
  }
}

function showTokenState() {
  document.getElementById('token-state').textContent = sessionStorage.getItem(tokenKey) ? 'a token is set for this tab' : 'no token';
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('token-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const field = document.getElementById('token');
    const token = field.value.trim();
    if (token) sessionStorage.setItem(tokenKey, token);
    field.value = '';
    showTokenState();
    refresh();
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(tokenKey);
    showTokenState();
  });
  document.getElementById('lookup-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const id = document.getElementById('lookup-id').value.trim();
    if (id) lookup(id);
  });
  showTokenState();
  refresh();
});
