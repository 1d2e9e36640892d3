// Operator console of the shop: a single page over the functions' own public APIs.
// Views live in the URL fragment (#/orders, #/orders/<id>, #/products, #/dead-letters,
// #/events, #/health, #/login). The admin token is kept in this tab's sessionStorage only and
// sent as a bearer to the admin routes; nothing secret is in the page itself. Every piece of
// API data reaches the DOM as text (textContent), never as markup.
'use strict';

(function () {
  const TOKEN_KEY = 'shop-console.admin-token';
  /** The functions that consume events: dead letters and sweeps. */
  const CONSUMERS = ['orders', 'inventory', 'billing', 'notifications'];
  /** The functions whose health is shown (the console included). */
  const ALL = ['orders', 'inventory', 'billing', 'notifications', 'payment-sim', 'console'];
  /** The functions with circuit breakers (`GET /<fn>/breakers`, admin). */
  const BREAKERS = ['billing', 'notifications'];
  const STATUSES = ['pending', 'reserved', 'confirmed', 'cancelled'];
  const PAGE_SIZES = ['10', '20', '50', '100'];
  const TIME_FORMAT = {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3,
  };
  /** Most events the live tail keeps on screen. */
  const TAIL = 100;

  /** Timers of the current view, cleared when the view changes. */
  let timers = [];
  /** Bumped on each view change: an answer for an older view is dropped. */
  let generation = 0;
  /** A message for the next view, shown once it is on screen. */
  let flash = null;

  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  /** An element with attributes (`on` holds listeners) and children (strings become text). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === 'on') {
        for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
      } else if (value === true) {
        el.setAttribute(name, '');
      } else if (value !== false && value !== null && value !== undefined) {
        el.setAttribute(name, String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function setStatus(text, kind) {
    const box = $('status');
    box.textContent = text || '';
    box.className = 'status' + (kind ? ' ' + kind : '');
  }

  /** Calls the shop's API on this origin; never throws: `{status, data, error}`. */
  async function api(method, path, { admin = false, body } = {}) {
    const headers = { accept: 'application/json' };
    if (admin && token()) headers.authorization = 'Bearer ' + token();
    if (body !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
      const text = await res.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
      const error = res.ok ? null : describeError(res.status, data);
      return { status: res.status, data, error };
    } catch (e) {
      return { status: 0, data: null, error: 'network error: ' + e.message };
    }
  }

  /** The shop's one error shape as a sentence. */
  function describeError(status, data) {
    const e = data && data.error;
    return e ? `${e.service || 'shop'}: ${e.code}: ${e.message}` : `HTTP ${status}`;
  }

  const money = (cents) => (cents === null || cents === undefined ? '—' : (cents / 100).toFixed(2));
  function time(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    // Milliseconds: one saga's steps are often within the same second.
    return h('time', { datetime: iso }, isNaN(d) ? iso : d.toLocaleString(undefined, TIME_FORMAT));
  }
  const badge = (text) => h('span', { class: 'badge ' + String(text) }, String(text));
  const orderLink = (id) => h('a', { href: '#/orders/' + encodeURIComponent(id), class: 'mono' }, id);
  const isFinal = (order) => order && (order.status === 'confirmed' || order.status === 'cancelled');

  function field(id, label, control) {
    control.id = id;
    return h('div', { class: 'field' }, h('label', { for: id }, label), control);
  }

  function select(name, options, value) {
    return h('select', { name },
      options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
  }

  function table(headers, rows, empty) {
    if (rows.length === 0) return h('p', { class: 'empty' }, empty);
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, headers.map(([text, cls]) => h('th', { scope: 'col', class: cls }, text)))),
      h('tbody', {}, rows)));
  }

  function needsAdmin(what) {
    return h('div', { class: 'card' },
      h('p', {}, `${what} needs the admin token. `, h('a', { href: '#/login' }, 'Sign in'), '.'));
  }

  function every(ms, fn) {
    const id = setInterval(fn, ms);
    timers.push(id);
  }

  // ---- session --------------------------------------------------------------------------

  function showSession() {
    const signedIn = token() !== '';
    $('session-state').textContent = signedIn ? 'Signed in (admin)' : 'Not signed in';
    $('login-link').hidden = signedIn;
    $('logout').hidden = !signedIn;
  }

  function loginView(main) {
    const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
    const form = h('form', { class: 'inline', id: 'login-form' },
      field('token', 'Admin token', input),
      h('button', { type: 'submit' }, 'Sign in'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const candidate = input.value.trim();
      if (!candidate) return;
      const button = form.querySelector('button');
      button.disabled = true;
      // Any admin-only read proves the token; nothing is stored unless it is accepted.
      const res = await fetch('/orders?limit=1', {
        headers: { authorization: 'Bearer ' + candidate, accept: 'application/json' },
        cache: 'no-store', credentials: 'omit',
      }).catch(() => null);
      button.disabled = false;
      input.value = '';
      if (res && res.ok) {
        sessionStorage.setItem(TOKEN_KEY, candidate);
        showSession();
        flash = ['Signed in. The token is kept in this tab only.', 'ok'];
        location.hash = '#/orders';
      } else {
        setStatus(res ? 'The token was refused.' : 'The shop did not answer.', 'error');
        input.focus();
      }
    });
    main.append(
      h('h1', { tabindex: '-1' }, 'Sign in'),
      h('div', { class: 'card' },
        h('p', {}, 'Admin routes (every customer\'s orders, restocking, dead letters, event feeds, sweeps, breakers) need the shop\'s admin token. ',
          'It stays in this browser tab\'s session storage and is forgotten when the tab closes.'),
        form));
  }

  // ---- orders ---------------------------------------------------------------------------

  function ordersView(main, params) {
    const customer = params.get('customer_id') || '';
    const status = params.get('status') || '';
    const limit = params.get('limit') || '20';
    const cursor = params.get('cursor') || '';
    const idInput = h('input', { type: 'search', name: 'order_id', placeholder: 'uuid', autocomplete: 'off' });
    const customerInput = h('input', { type: 'search', name: 'customer_id', value: customer, autocomplete: 'off' });
    const statusSelect = select('status', [['', 'any'], ...STATUSES.map((s) => [s, s])], status);
    const sizes = PAGE_SIZES.includes(limit) ? PAGE_SIZES : [limit, ...PAGE_SIZES];
    const limitSelect = select('limit', sizes.map((s) => [s, s]), limit);
    const form = h('form', { class: 'inline', id: 'order-search', role: 'search' },
      field('q-order', 'Order id', idInput),
      field('q-customer', 'Customer id', customerInput),
      field('q-status', 'Status', statusSelect),
      field('q-limit', 'Per page', limitSelect),
      h('button', { type: 'submit' }, 'Search'));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const id = idInput.value.trim();
      if (id) {
        location.hash = '#/orders/' + encodeURIComponent(id);
        return;
      }
      const q = new URLSearchParams();
      if (customerInput.value.trim()) q.set('customer_id', customerInput.value.trim());
      if (statusSelect.value) q.set('status', statusSelect.value);
      q.set('limit', limitSelect.value);
      location.hash = '#/orders?' + q.toString();
    });
    const results = h('section', { 'aria-labelledby': 'orders-results' },
      h('h2', { id: 'orders-results' }, customer ? `Orders of ${customer}` : 'All orders'));
    main.append(h('h1', { tabindex: '-1' }, 'Orders'), h('div', { class: 'card' }, form), results);

    if (!customer && !token()) {
      results.append(needsAdmin('Listing every customer\'s orders'),
        h('p', {}, 'Anyone may look up one order by its id or one customer\'s orders by customer id.'));
      return;
    }
    const q = new URLSearchParams();
    if (customer) q.set('customer_id', customer);
    if (status) q.set('status', status);
    q.set('limit', limit);
    if (cursor) q.set('cursor', cursor);
    const mine = generation;
    api('GET', '/orders?' + q.toString(), { admin: true }).then((r) => {
      if (mine !== generation) return;
      if (r.error) { setStatus(r.error, 'error'); return; }
      const rows = r.data.orders.map((o) => h('tr', { 'data-order': o.id },
        h('td', {}, orderLink(o.id)),
        h('td', {}, o.customer_id),
        h('td', {}, badge(o.status), o.cancel_reason ? h('div', { class: 'meta' }, o.cancel_reason) : null),
        h('td', { class: 'num' }, money(o.total_cents)),
        h('td', { class: 'hide-narrow' }, time(o.created_at))));
      results.append(table([['Order'], ['Customer'], ['Status'], ['Total', 'num'], ['Created', 'hide-narrow']],
        rows, 'No orders match.'));
      const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
      const base = new URLSearchParams(q);
      base.delete('cursor');
      if (cursor) pager.append(h('a', { href: '#/orders?' + base.toString(), id: 'first-page' }, 'First page'));
      if (r.data.next_cursor) {
        const next = new URLSearchParams(base);
        next.set('cursor', r.data.next_cursor);
        pager.append(h('a', { href: '#/orders?' + next.toString(), id: 'next-page' }, 'Next page'));
      }
      results.append(pager);
    });
  }

  function timeline(history) {
    return h('ol', { class: 'timeline', id: 'timeline' }, history.map((step) => {
      const parked = step.reason === 'event_parked';
      return h('li', { class: parked ? 'parked' : '', 'data-step-status': step.status },
        h('div', {}, parked ? badge('event parked') : badge(step.status), ' ', time(step.at)),
        h('div', { class: 'meta' }, 'source: ', h('span', { class: 'source' }, step.source)),
        step.reason && !parked ? h('div', { class: 'reason' }, 'cancel reason: ', step.reason) : null,
        step.detail ? h('div', { class: 'detail mono' }, step.detail) : null);
    }));
  }

  function orderView(main, id) {
    const refresh = h('button', { type: 'button', class: 'secondary', id: 'refresh' }, 'Refresh');
    const summary = h('div', { class: 'card', id: 'order-summary' }, h('p', { class: 'empty' }, 'Loading…'));
    const steps = h('section', { class: 'card', 'aria-labelledby': 'h-timeline' },
      h('h2', { id: 'h-timeline' }, 'Saga timeline'), h('p', { class: 'empty' }, 'Loading…'));
    const payment = h('section', { class: 'card', id: 'payment', 'aria-labelledby': 'h-payment' },
      h('h2', { id: 'h-payment' }, 'Payment'));
    const notes = h('section', { class: 'card', id: 'notifications', 'aria-labelledby': 'h-notes' },
      h('h2', { id: 'h-notes' }, 'Notifications'));
    main.append(
      h('h1', { tabindex: '-1' }, 'Order ', h('span', { class: 'mono' }, id)),
      h('p', {}, h('a', { href: '#/orders' }, '← Orders'), ' ', refresh),
      summary,
      h('div', { class: 'grid two' }, steps, h('div', {}, payment, notes)));
    const mine = generation;
    let polls = 0;

    async function load() {
      const [o, p, n] = await Promise.all([
        api('GET', '/orders/' + encodeURIComponent(id)),
        api('GET', '/billing/payments/' + encodeURIComponent(id)),
        api('GET', '/notifications?order_id=' + encodeURIComponent(id)),
      ]);
      if (mine !== generation) return true;
      if (o.error) {
        summary.replaceChildren(h('p', { class: 'reason' }, o.error));
        return o.status === 404 || o.status === 400;
      }
      const order = o.data;
      summary.replaceChildren(h('dl', { class: 'facts' },
        h('dt', {}, 'Status'), h('dd', {}, h('span', { id: 'order-status', 'data-status': order.status }, badge(order.status))),
        order.cancel_reason ? [h('dt', {}, 'Cancel reason'), h('dd', { class: 'reason', id: 'cancel-reason' }, order.cancel_reason)] : null,
        h('dt', {}, 'Customer'), h('dd', {}, h('a', { href: '#/orders?customer_id=' + encodeURIComponent(order.customer_id) }, order.customer_id)),
        h('dt', {}, 'Total'), h('dd', {}, money(order.total_cents)),
        h('dt', {}, 'Items'), h('dd', {}, order.items.map((i) => `${i.quantity} × ${i.sku} @ ${money(i.unit_price_cents)}`).join(', ')),
        h('dt', {}, 'Created'), h('dd', {}, time(order.created_at)),
        h('dt', {}, 'Updated'), h('dd', {}, time(order.updated_at))));
      steps.replaceChildren(h('h2', { id: 'h-timeline' }, 'Saga timeline'), timeline(order.history));
      payment.replaceChildren(h('h2', { id: 'h-payment' }, 'Payment'),
        p.status === 404 ? h('p', { class: 'empty' }, 'No payment (yet).')
          : p.error ? h('p', { class: 'reason' }, p.error)
            : h('dl', { class: 'facts', id: 'payment-facts' },
              h('dt', {}, 'Status'), h('dd', {}, badge(p.data.status)),
              h('dt', {}, 'Amount'), h('dd', {}, money(p.data.amount_cents), ' ', p.data.currency),
              h('dt', {}, 'Provider ref'), h('dd', { class: 'mono' }, p.data.provider_ref || '—')));
      const list = n.error ? [] : n.data.notifications;
      notes.replaceChildren(h('h2', { id: 'h-notes' }, 'Notifications'),
        n.error ? h('p', { class: 'reason' }, n.error)
          : list.length === 0 ? h('p', { class: 'empty' }, 'None (yet).')
            : h('ul', { class: 'plain' }, list.map((x) => h('li', { 'data-kind': x.kind },
              badge(x.status), ' ', x.kind, ' ', h('span', { class: 'meta' }, time(x.created_at), ` · ${x.attempts} attempt(s)`)))));
      // Settled once final and told: the payment exists unless stock ran out first.
      return isFinal(order) && list.length > 0;
    }

    let busy = false;
    async function tick() {
      if (busy) return;
      busy = true;
      const settled = await load();
      busy = false;
      polls += 1;
      if (settled || polls > 120) { timers.forEach(clearInterval); timers = []; }
    }
    refresh.addEventListener('click', () => { polls = 0; load(); });
    tick();
    every(1000, tick);
  }

  // ---- products -------------------------------------------------------------------------

  function productsView(main) {
    const list = h('section', { 'aria-labelledby': 'h-products' }, h('h2', { id: 'h-products' }, 'Stock'));
    const inputs = {
      sku: h('input', { name: 'sku', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}', autocomplete: 'off' }),
      name: h('input', { name: 'name', required: true, maxlength: '200', autocomplete: 'off' }),
      price: h('input', { name: 'price_cents', type: 'number', min: '1', required: true, inputmode: 'numeric' }),
      available: h('input', { name: 'available', type: 'number', min: '0', inputmode: 'numeric' }),
    };
    const form = h('form', { class: 'inline', id: 'restock-form' },
      field('p-sku', 'SKU', inputs.sku),
      field('p-name', 'Name', inputs.name),
      field('p-price', 'Price (cents)', inputs.price),
      field('p-available', 'Available (empty keeps it)', inputs.available),
      h('button', { type: 'submit' }, 'Save'));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = { name: inputs.name.value, price_cents: Number(inputs.price.value) };
      if (inputs.available.value !== '') body.available = Number(inputs.available.value);
      const sku = inputs.sku.value.trim();
      const r = await api('PUT', '/inventory/products/' + encodeURIComponent(sku), { admin: true, body });
      if (r.error) { setStatus(r.error, 'error'); return; }
      setStatus(`Saved ${sku}: ${r.data.available} available.`, 'ok');
      load();
    });
    const edit = token()
      ? h('section', { class: 'card', 'aria-labelledby': 'h-restock' }, h('h2', { id: 'h-restock' }, 'Restock or add a product'), form)
      : needsAdmin('Restocking');
    main.append(h('h1', { tabindex: '-1' }, 'Products'), edit, list);
    const mine = generation;

    function fill(p) {
      inputs.sku.value = p.sku;
      inputs.name.value = p.name;
      inputs.price.value = p.price_cents;
      inputs.available.value = p.available;
      inputs.available.focus();
    }

    async function load() {
      const r = await api('GET', '/inventory/products');
      if (mine !== generation) return;
      if (r.error) { setStatus(r.error, 'error'); return; }
      const rows = r.data.products.map((p) => h('tr', { 'data-sku': p.sku },
        h('td', { class: 'mono' }, p.sku),
        h('td', {}, p.name),
        h('td', { class: 'num hide-narrow' }, money(p.price_cents)),
        h('td', { class: 'num available' }, p.available),
        h('td', { class: 'num reserved' }, p.reserved),
        h('td', {}, token() ? h('button', { type: 'button', class: 'secondary', on: { click: () => fill(p) } }, 'Edit', h('span', { class: 'sr-only' }, ' ' + p.sku)) : null)));
      list.replaceChildren(h('h2', { id: 'h-products' }, 'Stock'),
        table([['SKU'], ['Name'], ['Price', 'num hide-narrow'], ['Available', 'num'], ['Reserved', 'num'], ['']], rows, 'No products.'));
    }
    load();
  }

  // ---- dead letters ---------------------------------------------------------------------

  function deadLettersView(main) {
    main.append(h('h1', { tabindex: '-1' }, 'Dead letters'),
      h('p', {}, 'Events a consumer parked after failing to apply them. Replay applies one again: it is removed on success and kept, with the new error, on failure.'));
    if (!token()) { main.append(needsAdmin('Reading dead letters')); return; }
    const mine = generation;
    const sections = CONSUMERS.map((fn) => {
      const section = h('section', { class: 'card', id: 'dl-' + fn, 'aria-labelledby': 'h-dl-' + fn },
        h('h2', { id: 'h-dl-' + fn }, fn));
      main.append(section);
      return [fn, section];
    });

    async function replay(fn, id, button) {
      button.disabled = true;
      const r = await api('POST', `/${fn}/dead-letters/${encodeURIComponent(id)}/replay`, { admin: true });
      if (mine !== generation) return;
      if (r.error) setStatus(`Replay of ${id} on ${fn} failed: ${r.error}`, 'error');
      else setStatus(`Replayed ${id} on ${fn}.`, 'ok');
      load(fn, sections.find(([f]) => f === fn)[1]);
    }

    async function load(fn, section) {
      const r = await api('GET', `/${fn}/dead-letters`, { admin: true });
      if (mine !== generation) return;
      const heading = h('h2', { id: 'h-dl-' + fn }, fn);
      if (r.error) { section.replaceChildren(heading, h('p', { class: 'reason' }, r.error)); return; }
      const rows = r.data.dead_letters.map((l) => h('tr', { 'data-letter': l.id },
        h('td', { class: 'mono' }, l.id),
        h('td', {}, l.type, h('div', { class: 'meta' }, `${l.source} p${l.partition} #${l.seq}`)),
        h('td', {}, l.order_id ? orderLink(l.order_id) : '—'),
        h('td', { class: 'num' }, l.attempts),
        h('td', { class: 'hide-narrow' }, time(l.parked_at)),
        h('td', { class: 'mono' }, l.error),
        h('td', {}, h('button', {
          type: 'button', 'data-replay': l.id, 'data-fn': fn,
          on: { click: (event) => replay(fn, l.id, event.currentTarget) },
        }, 'Replay', h('span', { class: 'sr-only' }, ' ' + l.id)))));
      section.replaceChildren(heading, table(
        [['Event'], ['Type'], ['Order'], ['Attempts', 'num'], ['Parked', 'hide-narrow'], ['Last error'], ['']],
        rows, 'Nothing parked.'));
    }
    sections.forEach(([fn, section]) => load(fn, section));
  }

  // ---- live events ----------------------------------------------------------------------

  function eventsView(main, params) {
    main.append(h('h1', { tabindex: '-1' }, 'Live events'));
    if (!token()) { main.append(needsAdmin('Reading the event feeds')); return; }
    const only = params.get('source') || '';
    const sourceSelect = select('source', [['', 'every function'], ...CONSUMERS.map((f) => [f, f])], only);
    sourceSelect.addEventListener('change', () => {
      location.hash = '#/events' + (sourceSelect.value ? '?source=' + sourceSelect.value : '');
    });
    const pause = h('button', { type: 'button', class: 'secondary', id: 'pause', 'aria-pressed': 'false' }, 'Pause');
    const body = h('div', { id: 'event-list' }, h('p', { class: 'empty' }, 'Reading the feeds…'));
    main.append(
      h('p', {}, 'The newest events of each function\'s feed (its outbox), polled every 2 seconds.'),
      h('div', { class: 'card' }, h('form', { class: 'inline', on: { submit: (e) => e.preventDefault() } },
        field('e-source', 'Source', sourceSelect), pause)),
      body);
    const feeds = only ? [only] : CONSUMERS;
    const after = Object.fromEntries(feeds.map((f) => [f, 0]));
    let events = [];
    let paused = false;
    let busy = false;
    const mine = generation;
    pause.addEventListener('click', () => {
      paused = !paused;
      pause.textContent = paused ? 'Resume' : 'Pause';
      pause.setAttribute('aria-pressed', String(paused));
    });

    function render() {
      const rows = events.map((e) => h('tr', { 'data-event': e.id },
        h('td', {}, time(e.occurred_at)),
        h('td', { class: 'hide-narrow' }, e.source),
        h('td', { class: 'event-type' }, e.type),
        h('td', {}, e.data && e.data.order_id ? orderLink(e.data.order_id) : '—'),
        h('td', { class: 'num hide-narrow' }, `p${e.partition} #${e.seq}`)));
      body.replaceChildren(table([['Occurred'], ['Source', 'hide-narrow'], ['Type'], ['Order'], ['Stream', 'num hide-narrow']],
        rows, 'No events yet.'));
    }

    /** Reads each feed from where it stopped; the first call pages through to the end. */
    async function poll() {
      if (paused || busy) return;
      busy = true;
      let failed = null;
      for (const fn of feeds) {
        for (let page = 0; page < 50; page++) {
          const r = await api('GET', `/${fn}/events?after=${after[fn]}&limit=100`, { admin: true });
          if (mine !== generation) { busy = false; return; }
          if (r.error) { failed = r.error; break; }
          const batch = r.data.events;
          if (batch.length === 0) break;
          after[fn] = r.data.next_after;
          events = events.concat(batch);
          if (batch.length < 100) break;
        }
      }
      events.sort((a, b) => (a.occurred_at < b.occurred_at ? 1 : a.occurred_at > b.occurred_at ? -1 : 0));
      events = events.slice(0, TAIL);
      busy = false;
      if (failed) setStatus(failed, 'error');
      render();
    }
    poll();
    every(2000, poll);
  }

  // ---- health, sweeps, breakers ---------------------------------------------------------

  function sweepReport(report) {
    const rows = [];
    for (const [source, c] of Object.entries(report.consumed || {})) {
      rows.push(h('li', {}, `consumed from ${source}: ${c.applied} applied, ${c.deferred} deferred`,
        c.error ? h('span', { class: 'reason' }, ` (${c.error})`) : null));
    }
    const r = report.retried || {};
    rows.push(h('li', {}, r.error ? `retry of pending events failed: ${r.error}`
      : `pending events retried: ${r.applied} applied, ${r.failed} failed, ${r.parked} parked`));
    rows.push(h('li', {}, `outbox rows published: ${report.published === null ? 'none (no outbox)' : report.published}`));
    for (const [key, value] of Object.entries(report)) {
      if (!['consumed', 'retried', 'published'].includes(key)) rows.push(h('li', {}, `${key}: `, h('code', {}, JSON.stringify(value))));
    }
    return h('ul', { class: 'plain sweep-report' }, rows);
  }

  /** A breaker's row: `data-breaker` is `<function>/<name>`, `data-state` its state. */
  function breakerRow(fn, b) {
    return h('tr', { 'data-breaker': `${fn}/${b.name}`, 'data-state': b.state },
      h('td', {}, fn),
      h('td', { class: 'mono' }, b.name),
      h('td', {}, badge(b.state)),
      h('td', { class: 'num' }, b.consecutive_failures),
      h('td', { class: 'hide-narrow' }, b.state === 'closed' || !b.until_ms ? '—' : time(new Date(b.until_ms).toISOString())));
  }

  function healthView(main) {
    const mine = generation;
    const breakerBody = h('div', { id: 'breaker-list' }, h('p', { class: 'empty' }, 'Reading…'));
    const breakers = h('section', { class: 'card', id: 'breakers', 'aria-labelledby': 'h-breakers' },
      h('h2', { id: 'h-breakers' }, 'Circuit breakers'),
      h('p', {}, 'The stored state of the breakers in front of synchronous calls (billing: payment provider; notifications: webhook), read every 2 seconds. ',
        'An open breaker refuses calls until the time shown, then lets one trial call (half-open) decide.'),
      breakerBody);
    let breakersBusy = false;

    async function loadBreakers() {
      if (breakersBusy) return;
      breakersBusy = true;
      const answers = await Promise.all(BREAKERS.map((fn) => api('GET', `/${fn}/breakers`, { admin: true })));
      breakersBusy = false;
      if (mine !== generation) return;
      const rows = [];
      const failures = [];
      answers.forEach((r, i) => {
        if (r.error) failures.push(h('p', { class: 'reason' }, `${BREAKERS[i]}: ${r.error}`));
        else rows.push(...r.data.breakers.map((b) => breakerRow(BREAKERS[i], b)));
      });
      breakerBody.replaceChildren(
        table([['Function'], ['Breaker'], ['State'], ['Failures', 'num'], ['Until', 'hide-narrow']], rows, 'No breakers.'),
        ...failures);
    }

    const rows = ALL.map((fn) => {
      const cell = h('td', {}, '…');
      api('GET', `/${fn}/health`).then((r) => {
        if (mine === generation) cell.replaceChildren(r.error ? badge('error') : badge('ok'), r.error ? ' ' + r.error : '');
      });
      return h('tr', { 'data-health': fn }, h('td', {}, fn), cell);
    });
    main.append(h('h1', { tabindex: '-1' }, 'Health'),
      h('section', { class: 'card', 'aria-labelledby': 'h-health' }, h('h2', { id: 'h-health' }, 'Functions'),
        table([['Function'], ['Health']], rows, '')),
      breakers);
    if (token()) {
      loadBreakers();
      every(2000, loadBreakers);
    } else {
      breakerBody.replaceChildren(needsAdmin('Reading breaker state'));
    }
    const sweeps = h('section', { class: 'card', 'aria-labelledby': 'h-sweeps' }, h('h2', { id: 'h-sweeps' }, 'Sweeps'),
      h('p', {}, 'A sweep catches a consumer up with every upstream feed, retries its pending events and republishes its outbox (the periodic safety net).'));
    main.append(sweeps);
    if (!token()) { sweeps.append(needsAdmin('Running a sweep')); return; }
    for (const fn of CONSUMERS) {
      const out = h('div', { id: 'sweep-' + fn });
      const button = h('button', { type: 'button', class: 'secondary', 'data-sweep': fn }, `Sweep ${fn}`);
      button.addEventListener('click', async () => {
        button.disabled = true;
        const r = await api('POST', `/${fn}/sweep`, { admin: true });
        button.disabled = false;
        if (mine !== generation) return;
        out.replaceChildren(r.error ? h('p', { class: 'reason' }, r.error) : sweepReport(r.data));
      });
      sweeps.append(h('h3', {}, fn), button, out);
    }
  }

  // ---- routing --------------------------------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/orders';
    const at = raw.indexOf('?');
    const path = at < 0 ? raw : raw.slice(0, at);
    const query = at < 0 ? '' : raw.slice(at + 1);
    const parts = path.split('/').filter(Boolean).map((p) => {
      try { return decodeURIComponent(p); } catch (_) { return p; }
    });
    return { parts, params: new URLSearchParams(query) };
  }

  function route() {
    timers.forEach(clearInterval);
    timers = [];
    generation += 1;
    const { parts, params } = parseHash();
    const view = parts[0] || 'orders';
    for (const link of document.querySelectorAll('[data-nav]')) {
      if (link.dataset.nav === view) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    const main = $('main');
    main.replaceChildren();
    if (view === 'orders' && parts[1]) orderView(main, parts[1]);
    else if (view === 'orders') ordersView(main, params);
    else if (view === 'products') productsView(main);
    else if (view === 'dead-letters') deadLettersView(main);
    else if (view === 'events') eventsView(main, params);
    else if (view === 'health') healthView(main);
    else if (view === 'login') loginView(main);
    else main.append(h('h1', { tabindex: '-1' }, 'Not found'), h('p', {}, 'No such view. ', h('a', { href: '#/orders' }, 'Orders')));
    document.title = (main.querySelector('h1') || {}).textContent + ' · Shop console';
    document.body.dataset.view = view;
  }

  function start() {
    // The skip link moves focus itself: following `#main` would change the view's route.
    document.querySelector('.skip').addEventListener('click', (event) => {
      event.preventDefault();
      $('main').focus();
    });
    $('logout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showSession();
      setStatus('Signed out.', 'ok');
      route();
    });
    window.addEventListener('hashchange', () => {
      setStatus(...(flash || ['']));
      flash = null;
      route();
      // Keyboard and screen-reader users land on the new view's heading, at the page's top.
      const heading = $('main').querySelector('h1');
      window.scrollTo(0, 0);
      if (heading) heading.focus({ preventScroll: true });
    });
    showSession();
    route();
  }

  start();
})();
