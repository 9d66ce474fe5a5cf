// sendgate operator page. Polls the processor's HTTP API and renders held
// intents, senders, alerts, decisions and usage. No framework, no build.
//
// Safety: API data contains user-controlled strings (addresses, reasons,
// messages), so nothing from the API ever goes through innerHTML: every
// node is built with createElement, and text goes in as text nodes.
'use strict';

const TOKEN_KEY = 'sendgate.token';
const DEFAULT_REFRESH_MS = 2000;
const MIN_REFRESH_MS = 250;
const NOTE_MS = 4000;
// A row acted on stays marked (buttons disabled) until the stage drops it
// from the list; after this long it is offered again, in case the command
// was refused by the stage.
const ACTED_TTL_MS = 30000;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// ?refresh_ms=N in the page URL overrides the polling period (at least 250).
const refreshMs = (() => {
  const n = Number(new URLSearchParams(location.search).get('refresh_ms'));
  return Number.isFinite(n) && n > 0 ? Math.max(MIN_REFRESH_MS, Math.floor(n)) : DEFAULT_REFRESH_MS;
})();

const state = {
  timer: null,
  inFlight: false,   // a poll is running: the interval skips its tick
  again: false,      // a refresh was asked for while a poll ran
  epoch: 0,          // bumped on sign-out: a poll of an older epoch is dropped
  usageScope: '',
  usageSender: '',
  last: {},          // section -> JSON text of its last answer
  data: {},          // section -> its last answer
  acts: new Map(),   // row key -> {s: 'busy' | 'done', at: ms}
  explainSeq: 0,     // only the latest explain request fills the panel
};

// ---------------------------------------------------------------- helpers

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One API call with the bearer token; JSON in and out. An error answer of
// shape {"error": "..."} becomes an ApiError with that message; a 401 signs
// out (the token is wrong or was revoked).
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `network error: ${e.message}`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: use the status line */ }
  if (!res.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : `${res.status} ${res.statusText || 'error'}`;
    if (res.status === 401) signOut(msg);
    throw new ApiError(res.status, msg);
  }
  return data;
}

// el('td', {className: 'mono', title: 'x'}, 'text', childNode): properties
// are set as DOM properties (never as HTML); `data` fills data-* attributes;
// string children become text nodes.
function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null) continue;
    if (k === 'data') Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of kids.flat()) if (c != null) e.append(c);
  return e;
}

// Addresses and scopes wrap after ':', '@' and '.' (never mid-name): the
// text goes in as text nodes with <wbr> elements between the parts.
function breakable(text) {
  const parts = String(text).split(/(?<=[:@.])/);
  return parts.flatMap((part, n) => (n ? [document.createElement('wbr'), part] : [part]));
}

function td(text, className) {
  if (text == null || text === '') return el('td', { className }, '—');
  return el('td', { className }, className === 'mono' ? breakable(text) : String(text));
}
const p2 = (n) => String(n).padStart(2, '0');
const hms = (d) => `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
const ymd = (d) => `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}`;
const sameDay = (a, b) => ymd(a) === ymd(b);

// Local time: HH:MM:SS today, with the date on any other day.
function fmtTime(ms, withSeconds = true) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) return '—';
  const d = new Date(ms);
  const t = withSeconds ? hms(d) : `${p2(d.getHours())}:${p2(d.getMinutes())}`;
  return sameDay(d, new Date()) ? t : `${ymd(d)} ${t}`;
}

function timeTd(ms) {
  const cell = td(fmtTime(ms), 'time');
  if (typeof ms === 'number' && ms > 0) cell.title = new Date(ms).toString();
  return cell;
}

const pct = (x) => (typeof x === 'number' && Number.isFinite(x) ? `${(x * 100).toFixed(2)}%` : '—');

function badge(tier) {
  const t = String(tier || 'unknown').toLowerCase();
  return el('span', { className: `tier tier-${t.replace(/[^a-z0-9-]/g, '')}` }, t);
}

// Fill a tbody with rows, or one "empty" row spanning the columns.
function fill(id, rows, cols, emptyText) {
  if (rows.length) $(id).replaceChildren(...rows);
  else $(id).replaceChildren(el('tr', { className: 'empty' }, el('td', { colSpan: cols }, emptyText)));
}

function setCount(id, n) { $(id).textContent = String(n); }

// What a listing covers: a string, or one line per instance that answered.
function setCovers(id, covers) {
  const lines = Array.isArray(covers) ? covers.map(String) : covers ? [String(covers)] : [];
  $(id).textContent = lines.join(' · ');
  $(id).title = lines.join('\n');
}

// An incomplete listing: some instance did not answer for its partitions.
function missingLine(id, missing) {
  const line = $(id);
  const list = Array.isArray(missing) ? missing : [];
  line.hidden = list.length === 0;
  line.textContent = list.length ? `Incomplete answer: no reply for ${list.join(', ')}` : '';
}

function setError(text) {
  $('error').textContent = text;
  $('error').hidden = !text;
}

let noteTimer = null;
function note(text, bad = false) {
  const n = $('note');
  n.textContent = text;
  n.classList.toggle('bad', bad);
  n.hidden = false;
  clearTimeout(noteTimer);
  noteTimer = setTimeout(() => { n.hidden = true; }, bad ? NOTE_MS * 2 : NOTE_MS);
}

// The tenant owning a scope's sender domain, from the last senders answer.
// An operator's token must name it for a domain a tenant owns (the API
// would otherwise act as tenant "default" and answer 403).
function ownerOfScope(scope) {
  const i = scope.indexOf(':');
  if (i < 0) return null;
  const kind = scope.slice(0, i);
  let domain = scope.slice(i + 1);
  if (kind === 'mailbox') domain = domain.slice(domain.lastIndexOf('@') + 1);
  else if (kind !== 'sender_domain') return null;
  domain = domain.toLowerCase();
  const row = (state.data.senders?.domains || []).find((d) => String(d.domain).toLowerCase() === domain);
  return row?.owner || null;
}

const withTenant = (path, tenant) => (tenant ? `${path}${path.includes('?') ? '&' : '?'}tenant=${enc(tenant)}` : path);

// ---------------------------------------------------------------- actions

// Runs one command for a row, keyed so the row keeps its state across
// re-renders: buttons disabled while in flight, class "acted" once sent.
async function act(key, call, doneNote, rerender) {
  if (state.acts.get(key)?.s === 'busy') return;
  state.acts.set(key, { s: 'busy', at: Date.now() });
  rerender();
  try {
    await call();
    state.acts.set(key, { s: 'done', at: Date.now() });
    note(doneNote);
    refreshSoon();
  } catch (e) {
    state.acts.delete(key);
    if (e.status !== 401) { note(e.message, true); setError(e.message); }
  }
  rerender();
}

// The row state of `key`, forgetting a "done" mark older than ACTED_TTL_MS.
function actState(key) {
  const a = state.acts.get(key);
  if (a && a.s === 'done' && Date.now() - a.at > ACTED_TTL_MS) { state.acts.delete(key); return null; }
  return a ? a.s : null;
}

// Forget marks of rows no longer listed (the stage released them).
function pruneActs(prefix, present) {
  for (const [k, a] of state.acts) if (k.startsWith(prefix) && a.s === 'done' && !present.has(k)) state.acts.delete(k);
}

function actButton(className, label, busy, onClick) {
  const b = el('button', { type: 'button', className, disabled: !!busy }, label);
  b.addEventListener('click', onClick);
  return b;
}

// ---------------------------------------------------------------- sections

const heldKey = (i) => `held:${i.tenant}\n${i.intent_id}`;

function renderHeld(data) {
  const list = data?.held || [];
  setCovers('held-covers', data?.covers);
  missingLine('held-missing', data?.missing);
  const present = new Set();
  const rows = list.map((i) => {
    const key = heldKey(i);
    present.add(key);
    const st = actState(key);
    const verb = (v) => () => act(
      key,
      () => api('POST', `/v1/held/${enc(i.intent_id)}/${v}?tenant=${enc(i.tenant)}`,
        { reason: `${v === 'approve' ? 'approved' : 'rejected'} on the operator page` }),
      v === 'approve' ? 'approval sent' : 'rejection sent',
      () => renderHeld(state.data.held));
    return el('tr', { className: st === 'done' ? 'acted' : '', data: { intentId: i.intent_id, tenant: i.tenant } },
      td(i.intent_id, 'mono'), td(i.tenant), td(i.sender, 'mono'), td(i.recipient, 'mono'),
      td(String(i.class || '').toLowerCase(), 'class'), timeTd(i.requested_at_ms),
      el('td', { className: 'actions' },
        actButton('approve', 'Approve', st, verb('approve')),
        actButton('reject', 'Reject', st, verb('reject'))));
  });
  pruneActs('held:', present);
  setCount('held-count', list.length);
  fill('held-rows', rows, 7, 'Nothing held.');
}

function renderSenders(data) {
  setCovers('senders-covers', data?.covers);
  missingLine('senders-missing', data?.missing);
  renderPaused(data?.paused || []);
  renderDomains(data?.domains || [], data?.paused || []);
  renderBackoffs(data?.backoffs || []);
}

function renderPaused(list) {
  const present = new Set();
  const rows = list.map((p) => {
    const key = `resume:${p.scope}`;
    present.add(key);
    const st = actState(key);
    const resume = () => act(
      key,
      () => api('POST', withTenant(`/v1/senders/${enc(p.scope)}/resume`, ownerOfScope(p.scope)),
        { reason: 'resumed on the operator page' }),
      'resume sent',
      () => renderPaused(state.data.senders?.paused || []));
    return el('tr', { className: st === 'done' ? 'acted' : '', data: { scope: p.scope } },
      td(p.scope, 'mono'), td(p.by), td(p.reason, 'wrap'), timeTd(p.since_ms),
      el('td', { className: 'actions' }, actButton('resume', 'Resume', st, resume)));
  });
  pruneActs('resume:', present);
  setCount('paused-count', list.length);
  fill('paused-rows', rows, 5, 'No paused senders.');
}

function renderDomains(list, paused) {
  const rows = list.map((d) => {
    // Without a "paused" field, the domain's own pause from the paused list.
    const pause = d.paused !== undefined ? d.paused
      : paused.filter((p) => p.domain === d.domain).map((p) => `${p.scope} by ${p.by}`).join(', ');
    const s = d.signals;
    const rate = (r, tier) => el('td', { className: 'rate' }, s ? pct(r) : '—', s ? ' ' : null, s ? badge(tier) : null);
    const sends = td(s ? s.sends : null, 'num');
    if (s) sends.title = `${s.window_hours} h window: ${s.hard_bounces} hard bounces, ${s.complaints} complaints`;
    // Warm-up caps: hourly_cap/daily_cap, or a caps map by window.
    const w = d.warmup;
    const warm = td(w ? `day ${w.day}, ${w.hourly_cap ?? w.caps?.hour ?? '—'}/h` : null);
    if (w) warm.title = `daily cap ${w.daily_cap ?? w.caps?.day ?? '—'}`;
    return el('tr', { data: { domain: d.domain } },
      td(d.domain, 'mono'), td(d.owner), rate(s?.bounce_rate, s?.bounce_tier), rate(s?.complaint_rate, s?.complaint_tier),
      sends, warm, td(pause, 'wrap'));
  });
  setCount('domains-count', list.length);
  fill('domains-rows', rows, 7, 'No domains.');
}

function renderBackoffs(list) {
  const rows = list.map((b) => el('tr', {},
    td(b.sender_domain, 'mono'), td(b.recipient_group), td(b.consecutive, 'num'), timeTd(b.until_ms)));
  setCount('backoffs-count', list.length);
  fill('backoffs-rows', rows, 4, 'No ISP backoffs.');
}

function renderAlerts(data) {
  const list = data?.alerts || [];
  const rows = list.map((a) => {
    const msg = td(a.message, 'wrap');
    const details = Object.entries(a.details || {});
    if (details.length) msg.title = details.map(([k, v]) => `${k}: ${v}`).join('\n');
    return el('tr', { data: { alertId: a.alert_id } },
      timeTd(a.at_ms), td(a.tenant), td(a.scope, 'mono'), el('td', {}, el('span', { className: 'kind' }, String(a.kind))), msg);
  });
  setCount('alerts-count', list.length);
  fill('alerts-rows', rows, 5, 'No alerts.');
}

function renderDecisions(data) {
  const list = data?.decisions || [];
  const rows = list.map((d) => {
    const status = String(d.status || '');
    const st = el('td', { className: `status status-${status.toLowerCase()}` }, status);
    if (d.stage) st.title = `stage: ${d.stage}`;
    const explainBtn = el('button', { type: 'button', className: 'explain link' }, 'explain');
    explainBtn.addEventListener('click', () => explain(d));
    return el('tr', { data: { intentId: d.intent_id } },
      timeTd(d.decided_at_ms), td(d.intent_id, 'mono'), td(d.tenant),
      el('td', { className: 'mono' }, breakable(d.sender), el('span', { className: 'arrow' }, ' → '), breakable(d.recipient)),
      st, td(d.reason, 'wrap'), timeTd(d.retry_at_ms), el('td', { className: 'actions' }, explainBtn));
  });
  setCount('decisions-count', list.length);
  fill('decisions-rows', rows, 8, 'No decisions yet.');
}

// Explain runs outside the poll (it may take seconds) and never blocks it.
async function explain(d) {
  const out = $('explain-out');
  const seq = ++state.explainSeq;
  $('explain').hidden = false;
  $('explain-title').textContent = `Explain ${d.intent_id} (${d.tenant})`;
  out.classList.remove('failed');
  out.textContent = 'explaining…';
  try {
    const r = await api('GET', `/v1/explain/${enc(d.intent_id)}?tenant=${enc(d.tenant)}`);
    if (seq === state.explainSeq) out.textContent = JSON.stringify(r, null, 2);
  } catch (e) {
    if (seq === state.explainSeq) {
      out.classList.add('failed');
      out.textContent = `explain failed: ${e.message}`;
    }
  }
}

function usagePath() {
  const scope = state.usageScope;
  if (!scope) return null;
  // A recipient domain's per-sender-domain windows and ISP backoff are
  // shown for one sender (an address or a domain).
  const sender = scope.startsWith('recipient') && state.usageSender ? `&sender=${enc(state.usageSender)}` : '';
  return withTenant(`/v1/usage?scope=${enc(scope)}${sender}`, ownerOfScope(scope));
}

function renderUsage(u) {
  const meta = [el('span', { className: 'mono' }, String(u.scope)), ` · policy v${u.policy_version}`];
  if (u.signals) {
    const s = u.signals;
    meta.push(` · bounces ${pct(s.bounce_rate)} `, badge(s.bounce_tier),
      ` complaints ${pct(s.complaint_rate)} `, badge(s.complaint_tier),
      ` · ${s.sends} sends in ${s.window_hours} h`);
  }
  if (u.paused) meta.push(el('div', { className: 'paused-line' }, `paused: ${u.paused}`));
  if (u.backoff_until_ms) meta.push(el('div', { className: 'paused-line' }, `ISP backoff: deferred until ${fmtTime(u.backoff_until_ms, false)}`));
  if (u.public_provider) meta.push(' · a public mailbox provider: per-domain limits do not apply');
  $('usage-meta').replaceChildren(...meta);

  const bars = (u.windows || []).map((w) => {
    // A zero limit allows nothing: shown as a full bar.
    const frac = w.limit > 0 ? w.used / w.limit : 1;
    const fillEl = el('div', { className: frac >= 0.8 ? 'fill hot' : 'fill' });
    fillEl.style.width = `${Math.min(100, Math.max(0, frac * 100)).toFixed(1)}%`;
    const label = `${w.scope} ${w.class} ${w.window}: ${w.used} / ${w.limit} ` +
      `(remaining ${w.remaining}, resets ${fmtTime(w.resets_at_ms, false)})`;
    return el('div', { className: 'usage-row' },
      el('div', { className: 'usage-label' }, label),
      el('div', { className: 'bar', title: `${(frac * 100).toFixed(1)}% used` }, fillEl));
  });
  $('usage-bars').replaceChildren(...(bars.length ? bars : [el('p', { className: 'empty' }, 'No windows for this scope.')]));
}

// Every polled section: its path now (null: skip) and its renderer.
const SECTIONS = [
  { name: 'held', path: () => '/v1/held?limit=200', render: renderHeld },
  { name: 'senders', path: () => '/v1/senders?limit=200', render: renderSenders },
  {
    name: 'alerts',
    path: () => {
      const kind = $('alerts-kind').value.trim();
      return `/v1/alerts?limit=50${kind ? `&kind=${enc(kind)}` : ''}`;
    },
    render: renderAlerts,
  },
  { name: 'decisions', path: () => '/v1/decisions?limit=50', render: renderDecisions },
  { name: 'usage', path: usagePath, render: renderUsage },
];

// ---------------------------------------------------------------- polling

// One poll: every section at once. Never overlaps itself: a tick that
// finds one running is skipped (refreshSoon queues one more instead).
async function tick() {
  if (!token() || state.inFlight) return;
  state.inFlight = true;
  const epoch = state.epoch;
  try {
    const active = SECTIONS.map((s) => ({ s, path: s.path() })).filter((x) => x.path);
    const results = await Promise.allSettled(active.map((x) => api('GET', x.path)));
    if (epoch !== state.epoch) return; // signed out meanwhile
    const errors = [];
    let ok = 0;
    results.forEach((r, n) => {
      const { s } = active[n];
      if (r.status === 'rejected') { errors.push(`${s.name}: ${r.reason.message}`); return; }
      ok++;
      const json = JSON.stringify(r.value);
      // Identical answer: keep the DOM (hover, focus, selection) untouched,
      // unless rows carry action marks that may need refreshing.
      if (json === state.last[s.name] && state.acts.size === 0) return;
      state.last[s.name] = json;
      state.data[s.name] = r.value;
      try { s.render(r.value); } catch (e) { errors.push(`${s.name}: unexpected answer (${e.message})`); }
    });
    setError(errors.join(' · '));
    if (ok) $('updated').textContent = `updated ${hms(new Date())}`;
  } finally {
    state.inFlight = false;
  }
  if (state.again) { state.again = false; tick(); }
}

function refreshSoon() {
  if (state.inFlight) state.again = true;
  else tick();
}

// ---------------------------------------------------------------- sign-in

function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

function showDashboard() {
  $('login-form').hidden = true;
  $('dashboard').hidden = false;
  $('logout').hidden = false;
  setError('');
  clearInterval(state.timer);
  state.timer = setInterval(tick, refreshMs);
  tick();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  state.timer = null;
  state.epoch++;
  state.again = false;
  state.last = {};
  state.data = {};
  state.acts.clear();
  state.explainSeq++;
  // Leave nothing of the previous token's data behind.
  for (const id of ['held-rows', 'paused-rows', 'domains-rows', 'backoffs-rows', 'alerts-rows', 'decisions-rows', 'usage-meta']) $(id).replaceChildren();
  $('usage-bars').replaceChildren(el('p', { className: 'empty' }, 'Choose a scope to see its windows.'));
  $('explain').hidden = true;
  $('updated').textContent = '';
  setError('');
  $('dashboard').hidden = true;
  $('logout').hidden = true;
  $('login-form').hidden = false;
  $('login-error').textContent = message || '';
  $('login-error').hidden = !message;
  $('token').value = '';
  $('token').focus();
}

function init() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    $('login-error').hidden = true;
    showDashboard();
  });
  $('logout').addEventListener('click', () => signOut(''));

  $('pause-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const scope = $('pause-scope').value.trim();
    if (!scope) return;
    const reason = $('pause-reason').value.trim() || 'paused on the operator page';
    $('pause-go').disabled = true;
    try {
      await api('POST', withTenant(`/v1/senders/${enc(scope)}/pause`, ownerOfScope(scope)), { reason });
      note(`pause sent for ${scope}`);
      $('pause-scope').value = '';
      $('pause-reason').value = '';
      refreshSoon();
    } catch (e) {
      if (e.status !== 401) { note(e.message, true); setError(e.message); }
    } finally {
      $('pause-go').disabled = false;
    }
  });

  $('usage-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.usageScope = $('usage-scope').value.trim();
    state.usageSender = $('usage-sender').value.trim();
    delete state.last.usage;
    $('usage-meta').replaceChildren();
    $('usage-bars').replaceChildren(el('p', { className: 'empty' },
      state.usageScope ? 'loading…' : 'Choose a scope to see its windows.'));
    refreshSoon();
  });

  // The kind filter is applied server-side; wait for typing to pause.
  let kindTimer = null;
  $('alerts-kind').addEventListener('input', () => {
    clearTimeout(kindTimer);
    kindTimer = setTimeout(() => { delete state.last.alerts; refreshSoon(); }, 400);
  });

  $('explain-close').addEventListener('click', () => {
    state.explainSeq++;
    $('explain').hidden = true;
  });

  if (token()) showDashboard();
  else signOut('');
}

document.addEventListener('DOMContentLoaded', init);
