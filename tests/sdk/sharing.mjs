// The SDK under Node with a stand-in EventSource (run by tests/it/pages.rs):
// watches of one query share one stream, each caller gets its own copy of
// the state (a late one at once), the stream closes with its last watcher,
// and a secret key is refused before anything is sent.
let opened = 0, closed = 0; const sources = [];
globalThis.EventSource = class { constructor(url) { opened++; this.url = url; this.l = {}; this.readyState = 1; sources.push(this); }
  addEventListener(n, f) { (this.l[n] ||= []).push(f); } close() { closed++; } emit(n, data) { for (const f of this.l[n] || []) f({ data: JSON.stringify(data) }); } };
EventSource.CLOSED = 2;
globalThis.customElements = { get() { return true; }, define() {} };
globalThis.HTMLElement = class {};
globalThis.fetch = async () => ({ ok: true, status: 200, json: async () => ({ sku: 'S', locations: [] }), headers: new Map() });
const sdk = await import(process.argv[2]);
const seen = [[], [], []];
const o = { key: 'opk_x', api: 'http://e' };
const a = sdk.watchAvailability('S', o, (s) => seen[0].push(s));
const b = sdk.watchAvailability('S', o, (s) => seen[1].push(s));
const c = sdk.watchAvailability('T', o, (s) => seen[2].push(s));
if (opened !== 2) throw new Error('opened ' + opened);
sources[0].emit('availability', { location: 'L1', availability: 'in_stock', atf: 7, kind: 'store' });
await new Promise((r) => setTimeout(r, 100));
if (seen[0].length !== 1 || seen[1].length !== 1 || seen[2].length !== 0) throw new Error('fan-out ' + JSON.stringify(seen.map((x) => x.length)));
if (seen[0][0] === seen[1][0]) throw new Error('shared object');
const late = []; const d = sdk.watchAvailability('S', o, (s) => late.push(s));
await new Promise((r) => setTimeout(r, 20));
if (late.length !== 1 || late[0].totalAtf !== 7) throw new Error('late ' + JSON.stringify(late));
a.close(); b.close(); if (closed !== 0) throw new Error('closed early');
d.close(); if (closed !== 1) throw new Error('not closed');
c.close(); if (closed !== 2) throw new Error('T not closed');
let refused = false; try { sdk.watchAvailability('S', { key: 'osk_secret' }, () => {}); } catch { refused = true; }
if (!refused) throw new Error('secret key accepted');
console.log('sdk sharing ok');
