//! The operator console (functions/console) in a real headless Chromium, driven over WebDriver
//! against the whole shop: its files and headers, the order view following a saga to
//! `confirmed` and showing a declined order's cancel reason, paging, restocking, a dead letter
//! replayed from the page, the live event tail, the health view with the circuit breakers
//! (`GET /<fn>/breakers`, billing's open while the payment provider is down, closed once it is
//! back), a 360 px wide viewport, and no error in the browser's console on any view. Screenshots of every view go to
//! `target/console-screenshots/` for people to look at.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use shop_e2e::webdriver::{Browser, ChromeDriver, ENTER, TAB};
use shop_e2e::{assert_error, unique_sku, Shop, ADMIN_TOKEN, SETTLE};
use testkit::{eventually, workspace_root};

/// How long the page may take to show what the API already says (it polls every 1-2 s).
const PAGE: Duration = Duration::from_secs(20);

fn screenshots() -> PathBuf {
    let dir = workspace_root().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot folder");
    dir
}

/// Fails on any error the page logged (script errors, CSP violations, failed loads), except
/// the 404 of a payment billing has not recorded yet, which the order view expects.
fn assert_clean_console(browser: &Browser, view: &str) {
    let errors: Vec<Value> = browser
        .console_log()
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .filter(|entry| {
            let message = entry["message"].as_str().unwrap_or_default();
            !(message.contains("/billing/payments/") && message.contains("status of 404"))
        })
        .collect();
    assert!(errors.is_empty(), "console errors on {view}: {errors:#?}");
}

/// Waits until `script` (a function body) returns true in the page.
fn wait_until(browser: &Browser, what: &str, script: &str) {
    let done = eventually(PAGE, || {
        (browser.execute(script, &[]) == Value::Bool(true)).then_some(())
    });
    assert!(
        done.is_some(),
        "the page never showed {what}:\n{}",
        browser.page_text()
    );
}

/// The view's layout fits the viewport: no horizontal scrolling (360 px phones).
fn assert_fits(browser: &Browser, view: &str) {
    let overflow = browser.execute(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        &[],
    );
    let widest = browser.execute(
        "const w = document.documentElement.clientWidth;
         return [...document.querySelectorAll('body *')]
           .filter((e) => !e.closest('.scroll') && e.getBoundingClientRect().right > w + 0.5)
           .slice(0, 5).map((e) => e.tagName + '.' + e.className + '#' + e.id);",
        &[],
    );
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "{view} scrolls sideways by {overflow} px: {widest}"
    );
}

/// Every form control has a label, every link a target, every clickable thing is a real
/// link or button: the page can be used with a keyboard alone.
fn assert_keyboard_usable(browser: &Browser, view: &str) {
    let problems = browser.execute(
        "const bad = [];
         for (const c of document.querySelectorAll('input, select, textarea'))
           if (!c.labels || c.labels.length === 0) bad.push('unlabelled ' + (c.name || c.id));
         for (const a of document.querySelectorAll('a')) if (!a.getAttribute('href')) bad.push('link without href');
         for (const e of document.querySelectorAll('[onclick], div[tabindex], span[tabindex]')) bad.push('fake control ' + e.outerHTML.slice(0, 60));
         return bad;",
        &[],
    );
    assert_eq!(problems, json!([]), "{view}: not keyboard-usable");
}

fn visit(browser: &Browser, base: &str, hash: &str) {
    browser.goto(&format!("{base}/console/{hash}"));
}

fn shot(browser: &Browser, name: &str) {
    browser.screenshot(&screenshots().join(format!("{name}.png")));
}

/// The console's own HTTP answers: page, files, health, errors, headers.
fn check_http(shop: &Shop) {
    let health = shop.get_json("/console/health", 200);
    assert_eq!(health, json!({"status": "ok", "service": "console"}));
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/favicon.svg", "image/svg+xml"),
    ] {
        let response = shop.host.get(path);
        assert_eq!(response.status, 200, "GET {path}");
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let csp = response
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(csp.starts_with("default-src 'none'"), "{path}: CSP {csp}");
        assert!(!csp.contains("http"), "{path}: CSP names an origin: {csp}");
        assert!(
            !response.body.contains(ADMIN_TOKEN),
            "{path} must hold no secret"
        );
    }
    let missing = shop.host.get("/console/no-such-file");
    let body = assert_error(&missing, 404, "NOT_FOUND");
    assert_eq!(body["error"]["service"], "console");
    assert!(missing.header("content-security-policy").is_some());
    let post = shop.send("POST", "/console/", &[], &Value::Null);
    assert_error(&post, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(post.header("allow"), Some("GET"));
}

#[test]
fn the_console_follows_orders_restocks_replays_and_tails_events() {
    let shop = Shop::start_with(&[("dead_letter_after", "2")]);
    check_http(&shop);
    let base = shop.host.url("");
    let base = base.trim_end_matches('/');

    let sku = unique_sku("CONSOLE");
    let poison = unique_sku("CONSOLE-POISON");
    let restock = unique_sku("CONSOLE-RESTOCK");
    shop.put_product(&sku, 1250, 20);
    shop.put_product(&restock, 300, 3);
    shop.put_product(&poison, 500, 5);
    // Inventory's store refuses the reservation of the poison SKU, so its order-created is
    // parked (as in dead_letters.rs) until the poison is lifted and the letter replayed.
    let poisoned = shop.poison_inserts("inventory", "reservations", "lines", &poison);
    let confirmed = shop.place_order("con-ok", &[(&sku, 2)], "tok_visa");
    let declined = shop.place_order("con-declined", &[(&sku, 1)], "tok_decline");
    let stuck = shop.place_order("con-stuck", &[(&poison, 1)], "tok_visa");
    let paged: Vec<String> = (0..3)
        .map(|_| shop.place_order("con-pager", &[(&sku, 1)], "tok_visa"))
        .collect();

    let driver = ChromeDriver::start();
    let browser = Browser::open(&driver, 1280, 900);

    // One order's saga, followed by the page itself until confirmed.
    visit(&browser, base, &format!("#/orders/{confirmed}"));
    wait_until(
        &browser,
        "the order confirmed",
        "const s = document.getElementById('order-status');
         return !!s && s.dataset.status === 'confirmed'
           && document.querySelectorAll('#timeline li').length >= 3
           && !!document.querySelector('#payment-facts')
           && !!document.querySelector('#notifications [data-kind=order_confirmed]');",
    );
    let timeline = browser.text(&browser.wait_for("#timeline", PAGE));
    for source in [
        "orders: POST /orders",
        "inventory: stock-reserved",
        "billing: payment-captured",
    ] {
        assert!(timeline.contains(source), "{source} in {timeline}");
    }
    assert!(browser.page_text().contains("captured"));
    assert_keyboard_usable(&browser, "order");
    shot(&browser, "order-confirmed");
    assert_clean_console(&browser, "order view");

    // A declined payment: cancelled, and why.
    visit(&browser, base, &format!("#/orders/{declined}"));
    wait_until(
        &browser,
        "the order cancelled with its reason",
        "const r = document.getElementById('cancel-reason');
         return !!r && r.textContent === 'payment_declined'
           && document.getElementById('order-status').dataset.status === 'cancelled';",
    );
    let timeline = browser.text(&browser.wait_for("#timeline", PAGE));
    assert!(timeline.contains("payment_declined"), "{timeline}");
    shot(&browser, "order-declined");
    assert_clean_console(&browser, "declined order view");

    // Listing every customer's orders needs the token: the page says so, then signs in.
    visit(&browser, base, "#/orders");
    wait_until(
        &browser,
        "the sign-in hint",
        "return document.body.innerText.includes('needs the admin token');",
    );
    visit(&browser, base, "#/login");
    let input = browser.wait_for("#token", PAGE);
    shot(&browser, "login");
    browser.fill(&input, ADMIN_TOKEN);
    browser.click(&browser.wait_for("#login-form button[type=submit]", PAGE));
    wait_until(
        &browser,
        "every order once signed in",
        &format!("return !!document.querySelector('[data-order=\"{stuck}\"]');"),
    );
    let stored = browser.execute(
        "return [sessionStorage.getItem('shop-console.admin-token'), localStorage.length,
                 document.documentElement.outerHTML.includes(arguments[0])];",
        &[json!(ADMIN_TOKEN)],
    );
    assert_eq!(
        stored,
        json!([ADMIN_TOKEN, 0, false]),
        "the token lives in sessionStorage only, never in the page"
    );
    assert_keyboard_usable(&browser, "orders");
    shot(&browser, "orders");
    assert_clean_console(&browser, "orders list");

    // Paging one customer's orders through next_cursor, two at a time.
    visit(&browser, base, "#/orders?customer_id=con-pager&limit=2");
    wait_until(
        &browser,
        "a first page of two and a next link",
        "return document.querySelectorAll('[data-order]').length === 2 && !!document.getElementById('next-page');",
    );
    browser.click(&browser.wait_for("#next-page", PAGE));
    wait_until(
        &browser,
        "the last page",
        &format!(
            "return document.querySelectorAll('[data-order]').length === 1
               && !!document.querySelector('[data-order=\"{}\"]')
               && !document.getElementById('next-page');",
            paged[0]
        ),
    );
    assert_clean_console(&browser, "paged orders");

    // Restocking from the form (a product no order of the test touches, so that the stock
    // checks at the end still hold).
    visit(&browser, base, "#/products");
    wait_until(
        &browser,
        "the products",
        &format!("return !!document.querySelector('[data-sku=\"{restock}\"]');"),
    );
    for (id, value) in [
        ("#p-sku", restock.as_str()),
        ("#p-name", "Console mug"),
        ("#p-price", "1300"),
        ("#p-available", "42"),
    ] {
        browser.fill(&browser.wait_for(id, PAGE), value);
    }
    browser.click(&browser.wait_for("#restock-form button[type=submit]", PAGE));
    wait_until(
        &browser,
        "the new stock",
        &format!(
            "const row = document.querySelector('[data-sku=\"{restock}\"] .available');
             return !!row && row.textContent === '42';"
        ),
    );
    assert_eq!(shop.product(&restock)["available"], 42);
    assert_eq!(shop.product(&restock)["name"], "Console mug");
    assert_keyboard_usable(&browser, "products");
    shot(&browser, "products");
    assert_clean_console(&browser, "products");

    // A parked event, replayed from the page once its cause is gone.
    let letter = eventually(SETTLE, || {
        shop.dead_letters("inventory")
            .into_iter()
            .find(|l| l["payload"]["data"]["order_id"] == stuck.as_str())
    })
    .unwrap_or_else(|| panic!("nothing parked\n{}", shop.logs_tail()));
    let letter_id = letter["id"].as_str().expect("id").to_string();
    visit(&browser, base, "#/dead-letters");
    let replay = format!("button[data-replay=\"{letter_id}\"][data-fn=\"inventory\"]");
    browser.wait_for(&replay, PAGE);
    shot(&browser, "dead-letters");
    shop.cure(poisoned);
    browser.click(&browser.wait_for(&replay, PAGE));
    wait_until(
        &browser,
        "the replay done and the letter gone",
        &format!(
            "return document.getElementById('status').textContent.includes('Replayed {letter_id}')
               && !document.querySelector('[data-letter=\"{letter_id}\"]');"
        ),
    );
    assert!(shop.dead_letters("inventory").is_empty());
    assert_eq!(shop.wait_final(&stuck)["status"], "confirmed");
    assert_clean_console(&browser, "dead letters");
    // The replayed order's timeline names the parked event, then its confirmation.
    visit(&browser, base, &format!("#/orders/{stuck}"));
    wait_until(
        &browser,
        "the parked step and the confirmation",
        "const s = document.getElementById('order-status');
         return !!s && s.dataset.status === 'confirmed' && !!document.querySelector('#timeline li.parked');",
    );
    shot(&browser, "order-replayed");
    assert_clean_console(&browser, "replayed order");

    // The live tail of the feeds.
    visit(&browser, base, "#/events");
    wait_until(
        &browser,
        "events of this test's orders",
        &format!(
            "return [...document.querySelectorAll('[data-event]')].some(
               (row) => row.textContent.includes('{confirmed}')
                 && row.querySelector('.event-type').textContent === 'order-confirmed');"
        ),
    );
    assert_keyboard_usable(&browser, "events");
    shot(&browser, "events");
    assert_clean_console(&browser, "events");

    // Health, the sweeps, and the breakers (all closed: nothing failed).
    visit(&browser, base, "#/health");
    wait_until(
        &browser,
        "every function healthy",
        "return [...document.querySelectorAll('[data-health]')].every((r) => r.textContent.includes('ok'));",
    );
    wait_until(
        &browser,
        "both breakers closed",
        "const rows = [...document.querySelectorAll('[data-breaker]')];
         return rows.map((r) => r.dataset.breaker).join() === 'billing/payment_provider,notifications/webhook'
           && rows.every((r) => r.dataset.state === 'closed');",
    );
    browser.click(&browser.wait_for("button[data-sweep=billing]", PAGE));
    wait_until(
        &browser,
        "billing's sweep report",
        "return !!document.querySelector('#sweep-billing .sweep-report');",
    );
    assert!(browser.page_text().contains("Circuit breakers"));
    assert_keyboard_usable(&browser, "health");
    shot(&browser, "health");
    assert_clean_console(&browser, "health");

    // From a fresh load, the keyboard reaches the skip link first, and it leads to the view.
    browser.goto(&format!("{base}/console/index.html#/products"));
    browser.wait_for("[data-sku]", PAGE);
    let active = "return [document.activeElement.tagName, document.activeElement.id,
                         document.activeElement.textContent.trim()];";
    browser.press(TAB);
    assert_eq!(
        browser.execute(active, &[]),
        json!(["A", "", "Skip to content"])
    );
    browser.press(ENTER);
    assert_eq!(browser.execute(active, &[])[1], "main");
    browser.press(TAB);
    assert_eq!(
        browser.execute(active, &[])[1],
        "p-sku",
        "after the skip link, the view's first control"
    );
    assert_clean_console(&browser, "keyboard");

    // The same views on a 360 px wide phone: nothing scrolls sideways.
    browser.set_size(360, 740);
    for (hash, name) in [
        (format!("#/orders/{confirmed}"), "mobile-order"),
        ("#/orders".to_string(), "mobile-orders"),
        ("#/products".to_string(), "mobile-products"),
        ("#/dead-letters".to_string(), "mobile-dead-letters"),
        ("#/events".to_string(), "mobile-events"),
        ("#/health".to_string(), "mobile-health"),
    ] {
        visit(&browser, base, &hash);
        wait_until(
            &browser,
            "the view",
            "return !!document.querySelector('main h1') && !document.body.innerText.includes('Loading');",
        );
        shot(&browser, name);
        assert_fits(&browser, name);
        assert_clean_console(&browser, name);
    }

    // Signing out forgets the token.
    browser.click(&browser.wait_for("#logout", PAGE));
    let left = browser.execute(
        "return sessionStorage.getItem('shop-console.admin-token');",
        &[],
    );
    assert_eq!(left, Value::Null);
    let mut ids = vec![confirmed, declined, stuck];
    ids.extend(paged);
    shop.check_invariants(&ids);
}

/// `GET /<fn>/breakers` of billing's payment provider for the admin.
fn provider_breaker(shop: &Shop) -> Value {
    let response = shop.admin("GET", "/billing/breakers", &Value::Null);
    assert_eq!(
        response.status, 200,
        "GET /billing/breakers: {}",
        response.body
    );
    let body = response.json();
    let breakers = body["breakers"].as_array().expect("a breakers array");
    assert_eq!(breakers.len(), 1, "{body}");
    breakers[0].clone()
}

/// Waits until billing's breaker reads `state` through the API; returns it.
fn wait_provider_breaker(shop: &Shop, state: &str) -> Value {
    eventually(SETTLE, || {
        let breaker = provider_breaker(shop);
        (breaker["state"] == state).then_some(breaker)
    })
    .unwrap_or_else(|| {
        panic!(
            "billing's breaker never {state}: {}\n{}",
            provider_breaker(shop),
            shop.logs_tail()
        )
    })
}

#[test]
fn the_health_view_shows_the_payment_breaker_open_then_closed() {
    // One failure opens the breaker; a trial goes 2 s later; the unpaid order's event is not
    // parked meanwhile.
    let shop = Shop::start_with(&[
        ("breaker_failure_threshold", "1"),
        ("breaker_open_ms", "2000"),
        ("dead_letter_after", "50"),
    ]);
    let base = shop.host.url("");
    let base = base.trim_end_matches('/');

    // Never used: closed, no failures. Admin only.
    for (function, name) in [
        ("billing", "payment_provider"),
        ("notifications", "webhook"),
    ] {
        let path = format!("/{function}/breakers");
        let response = shop.admin("GET", &path, &Value::Null);
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        assert_eq!(
            response.json(),
            json!({"breakers": [{"name": name, "state": "closed", "consecutive_failures": 0, "until_ms": 0}]})
        );
        assert_error(&shop.host.get(&path), 401, "UNAUTHENTICATED");
        let wrong = shop.send(
            "GET",
            &path,
            &[("authorization", "Bearer not-the-token")],
            &Value::Null,
        );
        assert_error(&wrong, 401, "UNAUTHENTICATED");
    }

    let driver = ChromeDriver::start();
    let browser = Browser::open(&driver, 1280, 900);
    // Signed out, the view says the breakers need the token.
    visit(&browser, base, "#/health");
    wait_until(
        &browser,
        "the sign-in hint for breakers",
        "const b = document.getElementById('breakers');
         return !!b && b.innerText.includes('needs the admin token') && !b.querySelector('[data-breaker]');",
    );
    visit(&browser, base, "#/login");
    browser.fill(&browser.wait_for("#token", PAGE), ADMIN_TOKEN);
    browser.click(&browser.wait_for("#login-form button[type=submit]", PAGE));
    wait_until(
        &browser,
        "the session signed in",
        "return document.getElementById('session-state').textContent === 'Signed in (admin)';",
    );

    // The provider down: the order's charge fails and billing's breaker opens.
    let sku = unique_sku("CONSOLE-BREAKER");
    shop.put_product(&sku, 700, 5);
    shop.set_faults(json!({"down": true}));
    let unpaid = shop.place_order("con-breaker", &[(&sku, 1)], "tok_visa");
    let opened = wait_provider_breaker(&shop, "open");
    assert_eq!(opened["name"], "payment_provider");
    assert!(
        opened["consecutive_failures"].as_u64() >= Some(1),
        "{opened}"
    );
    assert!(opened["until_ms"].as_i64() > Some(0), "{opened}");
    assert_error(&shop.host.get("/billing/breakers"), 401, "UNAUTHENTICATED");

    visit(&browser, base, "#/health");
    wait_until(
        &browser,
        "billing's payment_provider breaker open",
        "const row = document.querySelector('[data-breaker=\"billing/payment_provider\"]');
         return !!row && row.dataset.state === 'open' && row.textContent.includes('open')
           && document.querySelector('[data-breaker=\"notifications/webhook\"]').dataset.state === 'closed';",
    );
    assert_keyboard_usable(&browser, "health with a breaker open");
    shot(&browser, "health-breaker-open");
    assert_clean_console(&browser, "health with a breaker open");

    // Back up: the next trial call succeeds and the breaker closes, on the page too.
    shop.set_faults(json!({"down": false}));
    let closed = wait_provider_breaker(&shop, "closed");
    assert_eq!(closed["consecutive_failures"], 0, "{closed}");
    wait_until(
        &browser,
        "billing's payment_provider breaker closed again",
        "const row = document.querySelector('[data-breaker=\"billing/payment_provider\"]');
         return !!row && row.dataset.state === 'closed';",
    );
    shot(&browser, "health-breaker-closed");
    assert_clean_console(&browser, "health with the breaker closed again");
    assert_eq!(shop.wait_final(&unpaid)["status"], "confirmed");
    shop.check_invariants(&[unpaid]);
}
