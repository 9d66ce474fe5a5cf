// sendgate operator page. Polls the processor's HTTP API and renders held
// intents, senders, alerts, decisions and usage, and, for an operator's
// token, this instance's own metrics as small SVG charts. No framework, no
// build.
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
// Metrics scrapes kept for the charts (one per poll).
const MAX_SCRAPES = 60;

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
  caller: null,      // 'operator' | 'tenant' from /v1/whoami, asked once per sign-in
  scrapes: [],       // digests of the last MAX_SCRAPES /v1/metrics answers, oldest first
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
// out (the token is wrong or was revoked). With `asText`, a successful
// answer is returned as {text, answeredBy} instead (the metrics).
async function api(method, path, body, asText = false) {
  const headers = {
    Authorization: `Bearer ${token()}`,
    Accept: asText ? 'text/plain, application/json;q=0.5' : 'application/json',
  };
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
  if (asText && res.ok) return { text, answeredBy: res.headers.get('x-sendgate-answered-by') };
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

// ---------------------------------------------------------------- metrics
//
// An operator's token also sees this instance's own metrics: GET
// /v1/metrics answers the Prometheus text exposition format, scraped once
// per poll. Each scrape is reduced to a small digest (the families the
// cards draw) and the last MAX_SCRAPES digests are kept: rates and
// quantiles come from the differences between consecutive scrapes, as
// Prometheus's rate() and histogram_quantile() would compute them.

const SVG_NS = 'http://www.w3.org/2000/svg';
const METRIC_NAME = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const LABEL_NAME = /[a-zA-Z_][a-zA-Z0-9_]*/y;

// A sample value: a float, or +Inf, -Inf, NaN (any case). undefined when
// the text is none of these.
function parseValue(s) {
  if (s == null || s === '') return undefined;
  const l = s.toLowerCase();
  if (l === '+inf' || l === 'inf') return Infinity;
  if (l === '-inf') return -Infinity;
  if (l === 'nan') return NaN;
  const n = Number(s);
  return Number.isNaN(n) ? undefined : n;
}

// One sample line: name, optional {labels}, value, optional timestamp (or
// an OpenMetrics exemplar, ignored). null for a line that is not one.
function parseSample(line) {
  const isSpace = (c) => c === ' ' || c === '\t';
  METRIC_NAME.lastIndex = 0;
  const m = METRIC_NAME.exec(line);
  if (!m) return null;
  const name = m[0];
  let i = name.length;
  const labels = Object.create(null);
  while (isSpace(line[i])) i++;
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (isSpace(line[i])) i++;
      if (line[i] === '}') { i++; break; }          // also after a trailing comma
      LABEL_NAME.lastIndex = i;
      const lm = LABEL_NAME.exec(line);
      if (!lm) return null;
      i += lm[0].length;
      while (isSpace(line[i])) i++;
      if (line[i++] !== '=') return null;
      while (isSpace(line[i])) i++;
      if (line[i++] !== '"') return null;
      let v = '';
      for (;;) {
        if (i >= line.length) return null;           // unterminated value
        const c = line[i++];
        if (c === '"') break;
        if (c === '\\') {
          const e = line[i++];
          if (e === 'n') v += '\n';
          else if (e === '\\' || e === '"') v += e;
          else if (e === undefined) return null;
          else v += `\\${e}`;                         // unknown escape: kept as written
          continue;
        }
        v += c;
      }
      labels[lm[0]] = v;
      while (isSpace(line[i])) i++;
      if (line[i] === ',') { i++; continue; }
      if (line[i] === '}') { i++; break; }
      return null;
    }
  } else if (i < line.length && !isSpace(line[i - 1]) && !isSpace(line[i])) {
    return null;                                     // a name running into junk
  }
  const value = parseValue(line.slice(i).trim().split(/[ \t]+/)[0]);
  return value === undefined ? null : { name, labels, value };
}

// The whole exposition: samples by metric name. Comments (# HELP, # TYPE,
// # EOF, anything else after '#'), blank lines and lines that do not parse
// are skipped.
function parseExposition(text) {
  const byName = new Map();
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (!line || line[0] === '#') continue;
    const s = parseSample(line);
    if (!s) continue;
    if (!byName.has(s.name)) byName.set(s.name, []);
    byName.get(s.name).push(s);
  }
  return byName;
}

// sum by (key) (name): a Map from the label's value ('' when absent), or
// null when the family is absent. Non-finite values are left out.
function sumBy(byName, name, key) {
  const list = byName.get(name);
  if (!list) return null;
  const out = new Map();
  for (const s of list) {
    if (!Number.isFinite(s.value)) continue;
    const k = key ? (s.labels[key] ?? '') : '';
    out.set(k, (out.get(k) || 0) + s.value);
  }
  return out;
}

function sumAll(byName, name) {
  const m = sumBy(byName, name, null);
  return m ? (m.get('') || 0) : null;
}

// sum by (le) (name_bucket): upper bounds ascending with their cumulative
// counts, or null when the family is absent.
function histogramOf(byName, base) {
  const list = byName.get(`${base}_bucket`);
  if (!list) return null;
  const buckets = new Map();
  for (const s of list) {
    const le = parseValue(s.labels.le);
    if (le === undefined || Number.isNaN(le) || !Number.isFinite(s.value)) continue;
    buckets.set(le, (buckets.get(le) || 0) + s.value);
  }
  if (!buckets.size) return null;
  const les = [...buckets.keys()].sort((a, b) => a - b);
  return { les, cum: les.map((le) => buckets.get(le)) };
}

// What the cards need of one scrape.
function digestScrape(text, t, inst) {
  const m = parseExposition(text);
  return {
    t,
    inst: inst || null,
    decisions: sumBy(m, 'sendgate_decisions_total', 'status'),
    latency: histogramOf(m, 'sendgate_decision_latency_seconds'),
    tx: sumBy(m, 'sendgate_transactions_total', 'outcome'),
    commit: histogramOf(m, 'sendgate_transaction_commit_seconds'),
    lag: sumBy(m, 'sendgate_consumer_lag_records', 'task'),
    held: sumAll(m, 'sendgate_held_intents'),
    parked: sumAll(m, 'sendgate_parked_intents'),
    paused: sumAll(m, 'sendgate_paused_senders'),
    tiers: sumBy(m, 'sendgate_sender_domains', 'tier'),
    stateBytes: sumBy(m, 'sendgate_state_bytes', 'stage'),
    served: sumBy(m, 'sendgate_served_partitions', 'stage'),
    deadLetters: sumBy(m, 'sendgate_dead_letters_total', 'stage'),
    restarts: sumBy(m, 'sendgate_task_restarts_total', 'task'),
  };
}

// A counter's increase; a drop is a restart (counted from zero again).
const increase = (prev, cur) => (cur >= prev ? cur - prev : cur);

// A histogram's buckets' increase between two scrapes; a scrape without
// the previous one's buckets, or with a count that fell, restarted.
function histogramIncrease(prev, cur) {
  if (!cur) return null;
  if (!prev || prev.les.length !== cur.les.length || prev.les.some((le, n) => le !== cur.les[n])
      || cur.cum.some((c, n) => c < prev.cum[n])) return cur;
  return { les: cur.les, cum: cur.cum.map((c, n) => c - prev.cum[n]) };
}

// histogram_quantile: the bucket the rank falls in, linearly interpolated
// (from 0 for the first bucket); the highest finite bound when it falls in
// +Inf. NaN without observations or without a +Inf bucket.
function quantile(q, h) {
  if (!h) return NaN;
  const { les } = h;
  const n = les.length;
  if (n < 2 || les[n - 1] !== Infinity) return NaN;
  const cum = h.cum.slice();
  for (let i = 1; i < n; i++) if (cum[i] < cum[i - 1]) cum[i] = cum[i - 1];
  const total = cum[n - 1];
  if (!(total > 0)) return NaN;
  const rank = q * total;
  let b = 0;
  while (b < n - 1 && cum[b] < rank) b++;
  if (b === n - 1) return les[n - 2];
  if (b === 0 && les[0] <= 0) return les[0];
  const start = b === 0 ? 0 : les[b - 1];
  const below = b === 0 ? 0 : cum[b - 1];
  return start + (les[b] - start) * ((rank - below) / (cum[b] - below));
}

// Consecutive scrapes of one instance, with the seconds between them.
function scrapePairs(scrapes) {
  const out = [];
  for (let i = 1; i < scrapes.length; i++) {
    const a = scrapes[i - 1];
    const b = scrapes[i];
    const dt = (b.t - a.t) / 1000;
    if (dt > 0 && (a.inst === b.inst || !a.inst || !b.inst)) out.push([a, b, dt]);
  }
  return out;
}

// ---- formatting

function fmtNum(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (Number.isInteger(v) && a < 1e4) return String(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a >= 0.01) return v.toFixed(3).replace(/0+$/, '');
  return a >= 1e-4 ? v.toPrecision(2) : v.toExponential(1);
}

const fmtCount = (v) => (typeof v === 'number' && Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');

function fmtBytes(v) {
  if (typeof v !== 'number' || !Number.isFinite(v)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let x = v;
  let u = 0;
  while (Math.abs(x) >= 1024 && u < units.length - 1) { x /= 1024; u++; }
  return u === 0 ? `${Math.round(x)} B` : `${x.toFixed(Math.abs(x) >= 100 ? 0 : 1)} ${units[u]}`;
}

// The smallest 1, 2, 2.5 or 5 times a power of ten at or above x.
function niceCeil(x) {
  if (!(x > 0) || !Number.isFinite(x)) return 0;
  const e = 10 ** Math.floor(Math.log10(x));
  for (const f of [1, 2, 2.5, 5, 10]) if (f * e >= x * (1 - 1e-9)) return f * e;
  return 10 * e;
}

// ---- SVG charts

function svgEl(tag, attrs = {}, ...kids) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) e.setAttribute(k, String(v));
  for (const c of kids) if (c != null) e.append(c);
  return e;
}

const PALETTE = ['var(--accent)', 'var(--slow)', 'var(--paused)', 'var(--ok)', 'var(--bad)', '#0e7490', 'var(--warn)', 'var(--muted)'];
const STATUS_ORDER = ['ALLOWED', 'DEFERRED', 'PAUSED', 'BLOCKED', 'HELD'];
const STATUS_COLORS = { ALLOWED: 'var(--ok)', DEFERRED: 'var(--warn)', PAUSED: 'var(--paused)', BLOCKED: 'var(--bad)', HELD: 'var(--held)' };
const TASK_ORDER = ['router', 'sender', 'tenant', 'recipient', 'recipient_domain'];
const STAGE_ORDER = ['sender', 'tenant', 'recipient', 'recipient_domain'];
const TIERS = ['healthy', 'warn', 'slow', 'pause'];

// Known names first in their order, then the others sorted.
function ordered(names, known) {
  const set = new Set(names);
  return [...known.filter((k) => set.has(k)), ...[...set].filter((k) => !known.includes(k)).sort()];
}

// Every label value a Map field of the scrapes has had.
function keysOf(scrapes, field) {
  const out = new Set();
  for (const s of scrapes) for (const k of s[field]?.keys() || []) out.add(k);
  return [...out];
}

const CHART_H = 124;

// One chart into a card's body: an SVG (class "chart") with a polyline
// (class "series") per series, min/max labels on the value axes and the
// first/last scrape times on the time axis; then a legend with each
// series' latest value. spec: {title, t0, t1, series: [{name, color,
// points: [[t, v]], axis: 'left'|'right', fmt}], axes: {left, right}
// (label formatters), empty (text when no series has a point), foot}.
function drawChart(card, spec) {
  const body = card.querySelector('.card-body');
  const W = Math.max(240, Math.floor(body.clientWidth || 380));
  const H = CHART_H;
  const right = spec.series.some((s) => s.axis === 'right');
  const box = { l: 46, r: right ? 46 : 10, t: 7, b: 17 };
  const plotW = W - box.l - box.r;
  const plotH = H - box.t - box.b;

  let t1 = spec.t1;
  let t0 = spec.t0;
  if (!(t1 - t0 >= 1)) t0 = t1 - refreshMs;
  const x = (t) => box.l + ((t - t0) / (t1 - t0)) * plotW;

  // Each axis from 0 (or below, for a negative value) to a round maximum.
  const scales = {};
  for (const axis of ['left', 'right']) {
    let lo = 0;
    let hi = 0;
    for (const s of spec.series) {
      if ((s.axis || 'left') !== axis) continue;
      for (const [, v] of s.points) { if (v > hi) hi = v; if (v < lo) lo = v; }
    }
    const max = niceCeil(hi) || 1;
    const min = lo < 0 ? -niceCeil(-lo) : 0;
    scales[axis] = { min, max, y: (v) => box.t + (1 - (v - min) / (max - min)) * plotH };
  }

  const svg = svgEl('svg', {
    class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': spec.title,
  });
  for (const f of [0, 0.5, 1]) {
    const y = (box.t + f * plotH).toFixed(1);
    svg.append(svgEl('line', { class: f === 1 ? 'grid base' : 'grid', x1: box.l, x2: W - box.r, y1: y, y2: y }));
  }
  const label = (text, lx, ly, anchor, cls) => svg.append(svgEl('text', { x: lx, y: ly, 'text-anchor': anchor, class: cls }, text));
  for (const axis of right ? ['left', 'right'] : ['left']) {
    const sc = scales[axis];
    const fmt = spec.axes?.[axis] || fmtNum;
    const lx = axis === 'left' ? box.l - 5 : W - box.r + 5;
    const anchor = axis === 'left' ? 'end' : 'start';
    label(fmt(sc.max), lx, box.t + 7, anchor, `axis-max ${axis}`);
    label(fmt(sc.min), lx, box.t + plotH + 3, anchor, `axis-min ${axis}`);
  }
  label(hms(new Date(t0)), box.l, H - 3, 'start', 'axis-t0');
  label(hms(new Date(t1)), W - box.r, H - 3, 'end', 'axis-t1');

  const legend = el('div', { className: 'legend' });
  let any = false;
  for (const s of spec.series) {
    const y = scales[s.axis || 'left'].y;
    const pts = s.points.filter(([t, v]) => Number.isFinite(v) && t >= t0 && t <= t1)
      .map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    if (pts.length) any = true;
    if (pts.length === 1) pts.push(pts[0]); // a lone point: a dot (round caps)
    const line = svgEl('polyline', { class: 'series', points: pts.join(' '), 'data-series': s.name },
      svgEl('title', {}, s.name));
    line.style.stroke = s.color;
    svg.append(line);

    const last = s.points[s.points.length - 1];
    const latest = last && last[0] === spec.t1 ? last[1] : NaN;
    const swatch = el('span', { className: 'swatch' });
    swatch.style.background = s.color;
    legend.append(el('span', { className: 'legend-item', data: { series: s.name } },
      swatch, el('span', { className: 'legend-name' }, s.name), el('span', { className: 'latest' }, (s.fmt || fmtNum)(latest))));
  }
  if (!any) label(spec.empty || 'no data yet', box.l + plotW / 2, box.t + plotH / 2 + 4, 'middle', 'chart-empty');
  const kids = [svg, legend];
  if (spec.foot) kids.push(el('div', { className: 'card-foot' }, spec.foot));
  body.replaceChildren(...kids);
}

// ---- the cards

const fmtMs = (v) => (Number.isFinite(v) ? `${fmtNum(v)} ms` : '—');
const perSec = (v) => (Number.isFinite(v) ? `${fmtNum(v)}/s` : '—');

function renderMetricCharts() {
  const scrapes = state.scrapes;
  if (!scrapes.length) return;
  const t0 = scrapes[0].t;
  const t1 = scrapes[scrapes.length - 1].t;
  const pairs = scrapePairs(scrapes);
  const waiting = scrapes.length < 2 ? 'waiting for a second scrape' : null;

  // 1. Decisions per second by status.
  const statuses = ordered(keysOf(scrapes, 'decisions'), STATUS_ORDER);
  drawChart($('m-decisions'), {
    title: 'Decisions per second by status',
    t0, t1,
    series: statuses.map((status, n) => ({
      name: status,
      color: STATUS_COLORS[status] || PALETTE[n % PALETTE.length],
      fmt: perSec,
      points: pairs.filter(([a, b]) => a.decisions || b.decisions)
        .map(([a, b, dt]) => [b.t, increase(a.decisions?.get(status) || 0, b.decisions?.get(status) || 0) / dt]),
    })),
    axes: { left: perSec },
    empty: waiting || 'no decisions yet',
  });

  // 2. Decision latency p50 and p99: no point for an interval without a decision.
  const lat = pairs.map(([a, b]) => [b.t, histogramIncrease(a.latency, b.latency)]);
  drawChart($('m-latency'), {
    title: 'Decision latency p50 and p99 (ms)',
    t0, t1,
    series: [['p50', 0.5, 'var(--accent)'], ['p99', 0.99, 'var(--slow)']].map(([name, q, color]) => ({
      name, color, fmt: fmtMs,
      points: lat.map(([t, h]) => [t, quantile(q, h) * 1000]).filter(([, v]) => Number.isFinite(v)),
    })),
    axes: { left: fmtMs },
    empty: waiting || 'no decisions in this window',
  });

  // 3. Consumer lag by task (a gauge: a point per scrape that has it).
  const tasks = ordered(keysOf(scrapes, 'lag'), TASK_ORDER);
  drawChart($('m-lag'), {
    title: 'Consumer lag by task (records)',
    t0, t1,
    series: tasks.map((task, n) => ({
      name: task,
      color: PALETTE[n % PALETTE.length],
      fmt: fmtNum,
      points: scrapes.filter((s) => s.lag?.has(task)).map((s) => [s.t, s.lag.get(task)]),
    })),
    empty: 'no lag reported yet',
  });

  // 4. Commits per second (left) and commit p99 in ms (right).
  const last = scrapes[scrapes.length - 1];
  const tx = (o) => fmtCount(last.tx?.get(o) || 0);
  drawChart($('m-commits'), {
    title: 'Transaction commits per second and commit p99 (ms)',
    t0, t1,
    series: [
      {
        name: 'commits', color: 'var(--accent)', axis: 'left', fmt: perSec,
        points: pairs.filter(([a, b]) => a.tx || b.tx)
          .map(([a, b, dt]) => [b.t, increase(a.tx?.get('committed') || 0, b.tx?.get('committed') || 0) / dt]),
      },
      {
        name: 'commit p99', color: 'var(--slow)', axis: 'right', fmt: fmtMs,
        points: pairs.map(([a, b]) => [b.t, quantile(0.99, histogramIncrease(a.commit, b.commit)) * 1000])
          .filter(([, v]) => Number.isFinite(v)),
      },
    ],
    axes: { left: perSec, right: fmtMs },
    empty: waiting || 'no transactions yet',
    foot: `since start: ${tx('committed')} committed · ${tx('failed')} failed · ${tx('aborted')} aborted`,
  });
}

function tile(label, value, { sub, title, className, stat } = {}) {
  return el('div', { className: `tile${className ? ` ${className}` : ''}`, title, data: stat ? { stat } : undefined },
    el('span', { className: 'tile-label' }, label),
    el('span', { className: 'tile-value' }, value),
    sub ? el('span', { className: 'tile-sub' }, sub) : null);
}

function tileGroup(name, tiles) {
  return el('div', { className: 'tile-group' },
    el('div', { className: 'tile-group-name' }, name), el('div', { className: 'tiles' }, tiles));
}

const breakdown = (m) => (m && m.size ? [...m].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k || '(none)'}: ${fmtCount(v)}`).join('\n') : '');
const sumValues = (m) => (m ? [...m.values()].reduce((a, b) => a + b, 0) : 0);

// 5. The last scrape's gauges and totals as tiles.
function renderMetricTiles() {
  const s = state.scrapes[state.scrapes.length - 1];
  if (!s) return;
  const dead = sumValues(s.deadLetters);
  const restarts = sumValues(s.restarts);
  const now = [
    tile('Held', fmtCount(s.held), { stat: 'held', title: 'intents held for approval' }),
    tile('Parked', fmtCount(s.parked), { stat: 'parked', title: 'intents parked behind reservations in flight' }),
    tile('Paused senders', fmtCount(s.paused), { stat: 'paused', title: 'paused sender domains and mailboxes' }),
    tile('Dead letters', fmtCount(dead), { stat: 'dead-letters', className: dead > 0 ? 'hot' : '', title: `total since start${s.deadLetters?.size ? `\n${breakdown(s.deadLetters)}` : ''}` }),
    tile('Task restarts', fmtCount(restarts), { stat: 'restarts', className: restarts > 0 ? 'hot' : '', title: `total since start${s.restarts?.size ? `\n${breakdown(s.restarts)}` : ''}` }),
  ];
  const tiers = ordered([...TIERS, ...(s.tiers?.keys() || [])], TIERS).map((tier) =>
    tile(tier, s.tiers ? fmtCount(s.tiers.get(tier) || 0) : '—', {
      stat: `tier-${tier}`, className: `tier-${tier.replace(/[^a-z0-9-]/g, '')}`, title: `sender domains whose worse tier is ${tier}`,
    }));
  const stages = ordered([...STAGE_ORDER, ...(s.stateBytes?.keys() || []), ...(s.served?.keys() || [])], STAGE_ORDER).map((stage) => {
    const parts = s.served?.get(stage);
    return tile(stage, fmtBytes(s.stateBytes?.get(stage)), {
      stat: `stage-${stage}`,
      sub: parts === undefined ? 'partitions —' : `${fmtCount(parts)} partition${parts === 1 ? '' : 's'} served`,
      title: `${stage} stage: local state (RocksDB's estimate) and stage partitions served`,
    });
  });
  $('m-state').querySelector('.card-body').replaceChildren(
    tileGroup('Intents & senders', now),
    tileGroup('Sender domains by tier', tiers),
    tileGroup('State per stage', stages));
}

function renderMetrics() {
  const n = state.scrapes.length;
  const last = state.scrapes[n - 1];
  $('metrics-meta').textContent = last
    ? `${last.inst ? `instance ${last.inst} · ` : ''}${n} scrape${n === 1 ? '' : 's'} kept (last ${MAX_SCRAPES}), every ${refreshMs / 1000} s`
    : '';
  renderMetricCharts();
  renderMetricTiles();
}

function clearMetrics() {
  state.scrapes = [];
  for (const id of ['m-decisions', 'm-latency', 'm-lag', 'm-commits', 'm-state']) $(id).querySelector('.card-body').replaceChildren();
  $('metrics-meta').textContent = '';
  $('metrics-off').hidden = true;
  $('metrics-cards').hidden = false;
  $('metrics').hidden = true;
}

// The metrics part of one poll: asks /v1/whoami first if this sign-in has
// not yet, then /v1/metrics for an operator. Answers what to show:
// {caller}, {caller, off} (404: no metrics) or {caller, text, inst, at}.
async function pollMetrics(epoch) {
  if (!state.caller) {
    const who = await api('GET', '/v1/whoami');
    if (epoch !== state.epoch) return null;
    state.caller = who?.caller === 'operator' ? 'operator' : 'tenant';
  }
  if (state.caller !== 'operator') return { caller: state.caller };
  try {
    const r = await api('GET', '/v1/metrics', undefined, true);
    return { caller: 'operator', text: r.text, inst: r.answeredBy, at: Date.now() };
  } catch (e) {
    if (e.status === 404) return { caller: 'operator', off: true };
    throw e;
  }
}

// Shows one poll's metrics answer (the poll's epoch is still current).
function applyMetrics(r) {
  if (!r) return;
  const section = $('metrics');
  if (r.caller !== 'operator') { section.hidden = true; return; }
  section.hidden = false;
  $('metrics-off').hidden = !r.off;
  $('metrics-cards').hidden = !!r.off;
  if (r.off) { $('metrics-meta').textContent = ''; return; }
  state.scrapes.push(digestScrape(r.text, r.at, r.inst));
  if (state.scrapes.length > MAX_SCRAPES) state.scrapes.splice(0, state.scrapes.length - MAX_SCRAPES);
  renderMetrics();
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
    const results = await Promise.allSettled([...active.map((x) => api('GET', x.path)), pollMetrics(epoch)]);
    if (epoch !== state.epoch) return; // signed out meanwhile
    const metrics = results.pop();
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
    if (metrics.status === 'rejected') {
      errors.push(`${state.caller ? 'metrics' : 'whoami'}: ${metrics.reason.message}`);
    } else {
      if (metrics.value?.text !== undefined) ok++;
      try { applyMetrics(metrics.value); } catch (e) { errors.push(`metrics: unexpected answer (${e.message})`); }
    }
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
  state.caller = null; // asked again at the next sign-in
  clearMetrics();      // the stored scrapes too
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

  // Charts are drawn at their card's width: redraw them when it changes.
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (!$('metrics').hidden && state.scrapes.length) renderMetricCharts(); }, 150);
  });

  if (token()) showDashboard();
  else signOut('');
}

document.addEventListener('DOMContentLoaded', init);
