// omnistock browser SDK: live "in stock near you" for product pages.
// Served by the engine at GET /sdk/omnistock.js as a dependency-free ES module.
// Only publishable keys (opk_...) belong in a page. They travel in the query
// string: EventSource cannot set headers, and a query key keeps fetch() a
// "simple" CORS request (no preflight). The engine refuses secret keys in URLs.

// Default engine: wherever this module came from, so pages need no config.
const DEFAULT_API = new URL(import.meta.url).origin;
// A stream opens with a burst of one event per position. Waiting a few ms
// makes the burst one onChange; a microtask would not, since each SSE event
// is dispatched separately with a microtask checkpoint after it.
const BATCH_MS = 10;
// A SKU stocked nowhere in the selection gets no snapshot events at all;
// after this long without one, ask over HTTP so the page never stays blank.
const SILENT_STREAM_MS = 1500;
const RETRY_MIN_MS = 1000, RETRY_MAX_MS = 30000;
const FEW_LEFT = 5; // "Only N left" is honest only for small exact quantities
const LEVELS = new Set(['in_stock', 'limited', 'out_of_stock']);

// Secret-key streams say "limited_availability"; accept both so the SDK
// survives a shape change. Anything unknown never promises stock.
const level = (v) => (v === 'limited_availability' ? 'limited' : LEVELS.has(v) ? v : 'out_of_stock');
// Banded keys never send quantities, threshold keys only small ones: null is hidden, not zero.
const quantity = (v) => (Number.isFinite(v) ? v : null);
const maxKnown = (a, b) => (a === null ? b : b === null ? a : Math.max(a, b));
const failure = (message, props) => Object.assign(new Error('omnistock: ' + message), props);

function settings(options) {
  const o = { ...options };
  if (!o.key) throw new TypeError('omnistock: options.key (a publishable opk_ key) is required');
  // A secret key in a page is readable by every visitor, and in a URL it
  // ends up in logs: refuse it here, before it is ever sent.
  if (!String(o.key).startsWith('opk_')) throw new TypeError('omnistock: options.key must be a publishable key (opk_...), never a secret one');
  // Trim instead of new URL(path, api): an engine behind a path prefix keeps it.
  o.api = String(o.api || DEFAULT_API).replace(/\/+$/, '');
  return o;
}

function endpoint(o, path, params) {
  const url = new URL(o.api + path);
  for (const [name, value] of Object.entries(params)) if (value != null && value !== '') url.searchParams.set(name, value);
  return url.href;
}

// Keeps the display name an HTTP answer gave: stream events do not repeat it.
function position(data, previous) {
  const entry = { location: data.location, availability: level(data.availability), atf: quantity(data.atf) };
  const name = data.name || previous?.name;
  if (name) entry.name = name;
  const kind = data.kind || previous?.kind;
  if (kind) entry.kind = kind;
  return entry;
}

// The engine does not publish its low-stock threshold, but a 'limited'
// location with a visible quantity proves it is at least that much.
const learn = (threshold, e) => (e.availability === 'limited' && e.atf !== null ? maxKnown(threshold, e.atf) : threshold);

function summarize(sku, positions, threshold) {
  const locations = [...positions.values()].map((e) => ({ ...e })) // the caller owns its copy
    .sort((a, b) => (a.location < b.location ? -1 : a.location > b.location ? 1 : 0));
  const inStock = locations.filter((l) => l.availability !== 'out_of_stock');
  // "Stores near you" counts stores, not the warehouses that ship.
  const storesInStock = inStock.filter((l) => l.kind !== 'warehouse').length;
  // A partial sum would understate stock, so one hidden quantity hides the total.
  const totalAtf = locations.every((l) => l.atf !== null) ? locations.reduce((sum, l) => sum + l.atf, 0) : null;
  const limited = inStock.every((l) => l.availability === 'limited') ||
    (totalAtf !== null && threshold !== null && totalAtf <= threshold);
  const availability = inStock.length === 0 ? 'out_of_stock' : limited ? 'limited' : 'in_stock';
  return { sku, availability, totalAtf, storesInStock, locations };
}

async function requestSnapshot(o, sku, cache) {
  // The read endpoint takes a list of locations where the stream takes one.
  const url = endpoint(o, '/v1/availability/' + encodeURIComponent(sku), { key: o.key, group: o.group, locations: o.location });
  let res;
  try {
    res = await fetch(url, { cache, headers: { accept: 'application/json' } });
  } catch (cause) {
    // A 403 for an origin not on the key's list has no CORS header, so the
    // browser shows it to us as a bare network error.
    throw failure(`cannot reach ${o.api} (engine down, or this page's origin is not allowed for the key)`, { cause, code: 'network' });
  }
  if (!res.ok) {
    const problem = await res.json().catch(() => ({}));
    throw failure(problem.detail || problem.title || `HTTP ${res.status}`, { status: res.status, code: problem.code });
  }
  const body = await res.json();
  const positions = new Map();
  let threshold = null;
  for (const data of body.locations || []) {
    const entry = position(data);
    positions.set(entry.location, entry);
    threshold = learn(threshold, entry);
  }
  // The engine's verdict on the total is the best threshold hint there is.
  if (level(body.availability) === 'limited') threshold = maxKnown(threshold, quantity(body.total_atf));
  return { positions, threshold };
}

/** One read; resolves to {sku, availability, totalAtf, storesInStock, locations}. */
export async function fetchAvailability(sku, options) {
  const { positions, threshold } = await requestSnapshot(settings(options), sku);
  return summarize(sku, positions, threshold);
}

// Watches of the same query share one stream: a browser keeps at most 6
// connections per host over HTTP/1.1, and the engine limits streams per
// address, so a page showing one SKU in several places opens one.
const shared = new Map();

/**
 * Live availability: onChange(state) after the opening snapshot, then after each
 * batch of changes. options: {key, api?, group?, location?, coalesceMs?, onError?}.
 */
export function watchAvailability(sku, options, onChange) {
  const o = settings(options);
  if (typeof onChange !== 'function') throw new TypeError('omnistock: onChange must be a function');
  const id = JSON.stringify([o.api, o.key, sku, o.group, o.location, o.coalesceMs]);
  let watch = shared.get(id);
  if (!watch) {
    watch = { watchers: new Set(), state: null };
    const all = (call) => { for (const w of [...watch.watchers]) call(w); };
    watch.stream = openWatch(sku, { ...o, onError: (err) => all((w) => w.onError?.(err)) }, (state) => {
      watch.state = state;
      all((w) => w.onChange(structuredClone(state))); // each caller owns its copy
    });
    shared.set(id, watch);
  }
  const watcher = { onChange, onError: options?.onError };
  watch.watchers.add(watcher);
  // A late joiner sees the state the others already have (after this call returns).
  if (watch.state) {
    const state = structuredClone(watch.state);
    setTimeout(() => { if (watch.watchers.has(watcher)) onChange(state); }, 0);
  }
  return {
    close() {
      if (!watch.watchers.delete(watcher) || watch.watchers.size > 0) return;
      watch.stream.close();
      shared.delete(id);
    },
  };
}

/** One stream of one query (see watchAvailability, which shares them). */
function openWatch(sku, o, onChange) {
  let positions = new Map(), threshold = null, source = null, closed = false;
  let heard = false, batchTimer = 0, silentTimer = 0, retryTimer = 0, retryMs = RETRY_MIN_MS;
  let refreshes = 0; // only the latest refresh may replace the map
  let touched = null; // locations the stream updated while a refresh was in flight
  const report = (err) => { if (!closed && o.onError) o.onError(err); };

  // Throttle, not debounce: a steady flow of changes still renders every BATCH_MS.
  const changed = () => {
    heard = true;
    if (closed || batchTimer) return;
    batchTimer = setTimeout(() => {
      batchTimer = 0;
      if (!closed) onChange(summarize(sku, positions, threshold));
    }, BATCH_MS);
  };

  // Full state over HTTP: after a resync, a silent stream or a refused one.
  const refresh = async () => {
    const mine = ++refreshes;
    touched = new Set();
    try {
      const fresh = await requestSnapshot(o, sku, 'no-cache'); // revalidate (ETag), never a stale copy
      if (closed || mine !== refreshes) return;
      // The stream resumed before this request began and delivers every later
      // change, so an event received meanwhile is never older than what the
      // stream will still send: it wins over the HTTP answer.
      for (const loc of touched) fresh.positions.set(loc, position(positions.get(loc), fresh.positions.get(loc)));
      positions = fresh.positions;
      threshold = maxKnown(threshold, fresh.threshold);
      changed();
    } finally {
      if (mine === refreshes) touched = null;
    }
  };
  const refreshQuietly = () => refresh().catch(report);

  const connect = () => {
    if (closed) return;
    const es = new EventSource(endpoint(o, '/v1/streams/availability',
      { key: o.key, sku, group: o.group, location: o.location, coalesce_ms: o.coalesceMs }));
    source = es;
    es.addEventListener('open', () => {
      retryMs = RETRY_MIN_MS;
      clearTimeout(silentTimer);
      if (!heard) silentTimer = setTimeout(() => { if (!heard && source === es) refreshQuietly(); }, SILENT_STREAM_MS);
    });
    es.addEventListener('availability', (event) => {
      let data = null;
      try { data = JSON.parse(event.data); } catch { /* not ours to show */ }
      if (typeof data?.location !== 'string') return;
      const entry = position(data, positions.get(data.location));
      positions.set(entry.location, entry);
      touched?.add(entry.location);
      threshold = learn(threshold, entry);
      changed();
    });
    es.addEventListener('resync', refreshQuietly);
    es.addEventListener('error', () => {
      // CONNECTING: the browser reconnects by itself with Last-Event-ID and the
      // engine resumes without loss. Only CLOSED (401/403/429/503, or not an
      // event stream at all) is ours to handle.
      if (source !== es || es.readyState !== EventSource.CLOSED) return;
      source = null;
      clearTimeout(silentTimer);
      // EventSource hides the status; a plain GET reveals why (its error is
      // reported) and, when it works, keeps the page current until we reconnect.
      refresh().then(() => report(failure('live stream refused (busy or rate limited?); retrying', { code: 'stream_closed' })), report)
        .finally(() => {
          if (closed) return;
          // Jittered (half to all of the delay): pages refused together,
          // e.g. by an engine restart, do not all come back at once.
          retryTimer = setTimeout(connect, retryMs / 2 + Math.random() * retryMs / 2);
          retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
        });
    });
  };

  connect();
  return {
    close() {
      closed = true;
      source?.close();
      [batchTimer, silentTimer, retryTimer].forEach(clearTimeout);
    },
  };
}

function label(state, singleLocation) {
  const { availability, totalAtf: n, storesInStock: stores } = state;
  if (availability === 'out_of_stock') return 'Out of stock';
  if (n !== null && n >= 1 && n <= FEW_LEFT) return `Only ${n} left`;
  if (availability === 'limited') return 'Low stock';
  if (singleLocation) return 'In stock';
  return `In stock at ${stores} ${stores === 1 ? 'store' : 'stores'} near you`;
}

// Defined only where custom elements exist, so importing the module elsewhere
// (tests, server-side rendering) still gives the functions.
function defineElement() {
  // Light DOM on purpose: the page styles the text and tests read textContent.
  class OmnistockAvailability extends HTMLElement {
    static observedAttributes = ['sku', 'group', 'location', 'key', 'api'];
    #watch = null; #state = null; #active = false; #restartQueued = false;
    connectedCallback() {
      // Stock changes while the shopper reads; let screen readers hear it.
      if (!this.hasAttribute('role')) this.setAttribute('role', 'status');
      this.#active = true;
      this.#start();
    }
    disconnectedCallback() {
      this.#active = false;
      this.#watch?.close();
    }
    attributeChangedCallback(_name, before, after) {
      // An upgrade reports each attribute before connectedCallback (#active is
      // false then), and pages set several attributes in a row: restart once.
      if (before === after || !this.#active || this.#restartQueued) return;
      this.#restartQueued = true;
      queueMicrotask(() => {
        this.#restartQueued = false;
        if (this.#active) this.#start();
      });
    }
    #start() {
      this.#watch?.close();
      this.#watch = null;
      this.#state = null;
      this.removeAttribute('data-error');
      this.#render();
      const attr = (name) => this.getAttribute(name) || undefined;
      try {
        if (!attr('sku')) throw new TypeError('omnistock: the sku attribute is required');
        const options = { key: attr('key'), api: attr('api'), group: attr('group'), location: attr('location'),
          onError: (err) => this.#fail(err) };
        this.#watch = watchAvailability(attr('sku'), options, (state) => {
          this.#state = state;
          this.removeAttribute('data-error');
          this.#render();
          this.dispatchEvent(new CustomEvent('change', { detail: state }));
        });
      } catch (err) {
        this.#fail(err);
      }
    }
    #fail(err) {
      this.setAttribute('data-error', err.message);
      if (!this.#state) this.textContent = 'Stock information unavailable'; // else keep the last known state
      this.dispatchEvent(new CustomEvent('error', { detail: err }));
    }
    #render() {
      const state = this.#state;
      const set = (name, value) => (value == null ? this.removeAttribute(name) : this.setAttribute(name, String(value)));
      set('data-availability', state?.availability);
      set('data-atf', state?.totalAtf);
      this.textContent = !state ? 'Checking stock…'
        : label(state, Boolean(this.getAttribute('location')) && !this.getAttribute('group'));
    }
  }
  customElements.define('omnistock-availability', OmnistockAvailability);
}

if (typeof customElements !== 'undefined' && !customElements.get('omnistock-availability')) defineElement();
