//! Soak run of the whole shop under random faults (bench/soak.sh; not part of CI).
//!
//! `soak [orders] [seconds]` starts the shop with the e2e fixture (real host, real Redis, real
//! components), places `orders` orders at a steady rate over `seconds`, and meanwhile injects
//! faults at random: Redis stopped and restarted, the host SIGKILLed and restarted, the payment
//! provider down, flaky or slow, and events published a second time. Some cards decline, some
//! SKUs run out, a few customers cancel. Afterwards it calls the sweep every 30 s (as
//! scripts/up.sh does) until every order is final, then reports the outcome, duplicated effects
//! and the saga invariant violations found by the fixture's checker; it exits non-zero when
//! anything was duplicated or violated.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shop_e2e::{order_body, unique_key, RaiseOnDrop, Shop, ADMIN_TOKEN, FUNCTIONS};
use testkit::{HttpClient, HttpResponse};

/// How often the sweep runs, as scripts/up.sh calls it.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Longest wait for every order to become final and every invariant to hold.
const QUIESCE_LIMIT: Duration = Duration::from_secs(900);
/// How long a request is retried while the host is down (restarting after a kill).
const RETRY_FOR: Duration = Duration::from_secs(90);
/// The producers whose feeds are echoed and checked for duplicated effects.
const PRODUCERS: [&str; 3] = ["orders", "inventory", "billing"];
/// SKUs with stock to spare, and SKUs that run out during the run.
const PLENTIFUL: [&str; 4] = ["SOAK-A", "SOAK-B", "SOAK-C", "SOAK-D"];
const SCARCE: [&str; 3] = ["SOAK-X", "SOAK-Y", "SOAK-Z"];
const SCARCE_STOCK: i64 = 25;

/// Random numbers from the standard library's randomly seeded hasher: the run needs unbiased
/// enough choices, not a reproducible sequence, so no generator crate is pulled in.
struct Dice {
    state: RandomState,
    counter: AtomicUsize,
}

impl Dice {
    fn new() -> Self {
        Dice {
            state: RandomState::new(),
            counter: AtomicUsize::new(0),
        }
    }

    /// A number in `0..n`.
    fn below(&self, n: u64) -> u64 {
        self.state
            .hash_one(self.counter.fetch_add(1, Ordering::Relaxed))
            % n.max(1)
    }

    /// True with probability `percent`/100.
    fn percent(&self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A duration between `low` and `high` milliseconds.
    fn millis(&self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

/// Requests against the host by URL, retried while it restarts; shared by the threads.
#[derive(Clone)]
struct Api {
    client: HttpClient,
    base: String,
}

impl Api {
    /// Sends until a response arrives (transport errors while the host is down are retried).
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Option<HttpResponse> {
        let bytes = body.map(Value::to_string).unwrap_or_default().into_bytes();
        let mut all = headers.to_vec();
        all.push(("content-type", "application/json"));
        let until = Instant::now() + RETRY_FOR;
        loop {
            match self
                .client
                .send(method, &format!("{}{path}", self.base), &all, &bytes)
            {
                Ok(response) if response.status < 500 => return Some(response),
                _ if Instant::now() >= until => return None,
                _ => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Option<HttpResponse> {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        self.send(method, path, &[("authorization", &bearer)], body)
    }

    fn sweep_all(&self) {
        for function in FUNCTIONS {
            self.admin("POST", &format!("/{function}/sweep"), None);
        }
    }

    /// How many orders are still `pending` or `reserved` (at most `limit` of each counted).
    fn open_orders(&self, limit: usize) -> usize {
        ["pending", "reserved"]
            .iter()
            .map(|status| {
                self.send(
                    "GET",
                    &format!("/orders?status={status}&limit={limit}"),
                    &[],
                    None,
                )
                .filter(|r| r.status == 200)
                .and_then(|r| r.json()["orders"].as_array().map(Vec::len))
                .unwrap_or(limit)
            })
            .sum()
    }

    /// Events of `producer` after `after`, one page.
    fn events_after(&self, producer: &str, after: i64) -> Vec<Value> {
        self.send(
            "GET",
            &format!("/{producer}/events?after={after}&limit=100"),
            &[],
            None,
        )
        .filter(|r| r.status == 200)
        .and_then(|r| r.json()["events"].as_array().cloned())
        .unwrap_or_default()
    }
}

/// What the run counts.
#[derive(Default)]
struct Tally {
    ids: Mutex<Vec<String>>,
    refused: AtomicUsize,
    cancel_requests: AtomicUsize,
    faults: Mutex<BTreeMap<&'static str, usize>>,
    republished: AtomicUsize,
}

impl Tally {
    fn fault(&self, kind: &'static str) {
        *self.faults.lock().unwrap().entry(kind).or_default() += 1;
        eprintln!(
            "[soak {:>5}s] fault: {kind}",
            START.get().map_or(0, |s| s.elapsed().as_secs())
        );
    }
}

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn main() {
    let mut args = std::env::args().skip(1);
    let orders: usize = args
        .next()
        .map_or(2000, |a| a.parse().expect("orders: a number"));
    let seconds: u64 = args
        .next()
        .map_or(600, |a| a.parse().expect("seconds: a number"));
    let dice = Dice::new();
    let tally = Tally::default();

    let mut shop = Shop::start_with(&[("breaker_open_ms", "1000")]);
    let api = Api {
        client: HttpClient::default(),
        base: shop.host.url(""),
    };
    for sku in PLENTIFUL {
        shop.put_product(sku, 100 + dice.below(5000) as i64, 1_000_000);
    }
    for sku in SCARCE {
        shop.put_product(sku, 100 + dice.below(5000) as i64, SCARCE_STOCK);
    }
    eprintln!(
        "[soak] {orders} orders over {seconds} s against {}",
        api.base
    );
    let started = *START.get_or_init(Instant::now);
    let placing_done = AtomicBool::new(false);
    let stop_sweeping = AtomicBool::new(false);

    thread::scope(|scope| {
        let sweeper = scope.spawn(|| {
            let mut last = Instant::now();
            while !stop_sweeping.load(Ordering::Relaxed) {
                if last.elapsed() >= SWEEP_EVERY {
                    api.sweep_all();
                    last = Instant::now();
                }
                thread::sleep(Duration::from_millis(200));
            }
        });
        let stop_sweeper = RaiseOnDrop(&stop_sweeping);
        let placer = scope.spawn(|| {
            let _done = RaiseOnDrop(&placing_done);
            place_orders(&api, &dice, &tally, orders, Duration::from_secs(seconds));
        });
        inject_faults(&mut shop, &api, &dice, &tally, &placing_done);
        placer.join().expect("placing thread");
        drop(stop_sweeper);
        sweeper.join().expect("sweeping thread");
    });
    let placed_in = started.elapsed();
    set_faults(
        &api,
        json!({"down": false, "fail_rate": 0.0, "latency_ms": 0}),
    );

    let ids = tally.ids.lock().unwrap().clone();
    eprintln!(
        "[soak] {} orders placed in {placed_in:?}; waiting for quiescence",
        ids.len()
    );
    let run = settle(&shop, &api, &ids, placed_in);
    report(&shop, &ids, &tally, &run);
    if !run.violations.is_empty() || !run.duplicates.is_empty() || run.clean.is_none() {
        eprintln!("{}", shop.logs_tail());
        std::process::exit(1);
    }
}

/// How the run ended.
struct Ending {
    placed_in: Duration,
    /// From the last order placed to no order pending or reserved.
    all_final: Option<Duration>,
    /// From the last order placed to every invariant holding.
    clean: Option<Duration>,
    violations: Vec<String>,
    duplicates: Vec<String>,
}

/// Sweeps every 30 s until every order is final and the invariants hold (bounded).
fn settle(shop: &Shop, api: &Api, ids: &[String], placed_in: Duration) -> Ending {
    let quiet = Instant::now();
    let mut last_sweep = Instant::now();
    let mut all_final = None;
    let mut violations = Vec::new();
    let clean = loop {
        if last_sweep.elapsed() >= SWEEP_EVERY {
            api.sweep_all();
            last_sweep = Instant::now();
        }
        if all_final.is_none() && api.open_orders(1) == 0 {
            all_final = Some(quiet.elapsed());
        }
        if all_final.is_some() {
            violations = shop.violations(ids);
            if violations.is_empty() {
                break Some(quiet.elapsed());
            }
        }
        if quiet.elapsed() >= QUIESCE_LIMIT {
            if violations.is_empty() {
                violations = shop.violations(ids);
            }
            break None;
        }
        thread::sleep(Duration::from_secs(1));
    };
    Ending {
        placed_in,
        all_final,
        clean,
        violations,
        duplicates: duplicated_effects(api),
    }
}

/// Places `count` orders evenly over `span`; retries each with its idempotency key until the
/// host answers, so an order accepted just before a kill is counted once.
fn place_orders(api: &Api, dice: &Dice, tally: &Tally, count: usize, span: Duration) {
    let start = Instant::now();
    let interval = span.div_f64(count.max(1) as f64);
    for n in 0..count {
        let due = start + interval.mul_f64(n as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let mut items = vec![(PLENTIFUL[dice.below(4) as usize], 1 + dice.below(3) as i64)];
        if dice.percent(20) {
            items.push((SCARCE[dice.below(3) as usize], 1 + dice.below(2) as i64));
        }
        let token = if dice.percent(10) {
            "tok_decline"
        } else {
            "tok_visa"
        };
        let body = order_body(&format!("soak-{}", n % 97), &items, token);
        let key = unique_key();
        match api.send("POST", "/orders", &[("idempotency-key", &key)], Some(&body)) {
            Some(response) if response.status == 201 => {
                let id = response.json()["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if dice.percent(3) {
                    tally.cancel_requests.fetch_add(1, Ordering::Relaxed);
                    api.send("POST", &format!("/orders/{id}/cancel"), &[], None);
                }
                tally.ids.lock().unwrap().push(id);
            }
            other => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "[soak] order {n} not placed: {:?}",
                    other.map(|r| (r.status, r.body))
                );
            }
        }
    }
}

/// Sets the payment simulator's faults, retrying while the host restarts.
fn set_faults(api: &Api, faults: Value) {
    let done = api.admin("PUT", "/payment-sim/faults", Some(&faults));
    assert!(
        done.is_some_and(|r| r.status == 200),
        "PUT /payment-sim/faults {faults}"
    );
}

/// Injects one random fault after another until the orders are placed.
fn inject_faults(shop: &mut Shop, api: &Api, dice: &Dice, tally: &Tally, done: &AtomicBool) {
    let mut echoed = BTreeMap::new();
    let pause = |span: Duration| {
        let until = Instant::now() + span;
        while Instant::now() < until && !done.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(100));
        }
    };
    loop {
        pause(dice.millis(5_000, 20_000));
        if done.load(Ordering::Relaxed) {
            return;
        }
        match dice.below(6) {
            0 => {
                tally.fault("redis_restart");
                shop.redis.stop();
                pause(dice.millis(1_000, 6_000));
                shop.redis.restart();
                shop.wait_subscribed();
            }
            1 => {
                tally.fault("host_sigkill");
                shop.host.kill9();
                thread::sleep(dice.millis(0, 2_000));
                shop.host.restart();
                shop.wait_subscribed();
            }
            2 => provider_fault(
                api,
                tally,
                "provider_down",
                json!({"down": true}),
                dice.millis(2_000, 10_000),
            ),
            3 => provider_fault(
                api,
                tally,
                "provider_flaky",
                json!({"fail_rate": 0.5}),
                dice.millis(5_000, 15_000),
            ),
            4 => provider_fault(
                api,
                tally,
                "provider_slow",
                json!({"latency_ms": 500 + dice.below(2500)}),
                dice.millis(5_000, 15_000),
            ),
            _ => {
                tally.fault("events_twice");
                let copied = republish(shop, api, &mut echoed);
                tally.republished.fetch_add(copied, Ordering::Relaxed);
            }
        }
    }
}

/// Turns a provider fault on for `span`, then off again.
fn provider_fault(api: &Api, tally: &Tally, kind: &'static str, faults: Value, span: Duration) {
    tally.fault(kind);
    set_faults(api, faults);
    thread::sleep(span);
    set_faults(
        api,
        json!({"down": false, "fail_rate": 0.0, "latency_ms": 0}),
    );
}

/// Publishes again every event of the producers' feeds not republished yet; returns how many.
fn republish(shop: &Shop, api: &Api, echoed: &mut BTreeMap<&'static str, i64>) -> usize {
    let mut copied = 0;
    for producer in PRODUCERS {
        let last = echoed.entry(producer).or_insert(0);
        loop {
            let page = api.events_after(producer, *last);
            let Some(seq) = page.last().and_then(|e| e["seq"].as_i64()) else {
                break;
            };
            for event in &page {
                shop.redis
                    .publish(&format!("shop.{producer}"), &event.to_string());
            }
            copied += page.len();
            *last = seq;
        }
    }
    copied
}

/// Events that say one effect happened twice: the same event type for the same order twice in
/// a producer's feed (each effect writes its event in its own transaction, so a doubly applied
/// event shows as a doubled event downstream).
fn duplicated_effects(api: &Api) -> Vec<String> {
    let mut out = Vec::new();
    for producer in PRODUCERS {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = api.events_after(producer, after);
            let Some(seq) = page.last().and_then(|e| e["seq"].as_i64()) else {
                break;
            };
            for event in &page {
                let kind = event["type"].as_str().unwrap_or_default().to_string();
                let order = event["data"]["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                *seen.entry((kind, order)).or_default() += 1;
            }
            after = seq;
        }
        out.extend(
            seen.into_iter()
                .filter(|(_, n)| *n > 1)
                .map(|((kind, order), n)| format!("{producer}: {kind} for {order} {n} times")),
        );
    }
    out
}

/// Prints the run as a Markdown table (for BENCHMARKS.md), then what went wrong, if anything.
fn report(shop: &Shop, ids: &[String], tally: &Tally, run: &Ending) {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for id in ids {
        let order = shop.order(id);
        let status = order["status"].as_str().unwrap_or("?").to_string();
        if status == "cancelled" {
            let reason = order["cancel_reason"].as_str().unwrap_or("?").to_string();
            *reasons.entry(reason).or_default() += 1;
        }
        *statuses.entry(status).or_default() += 1;
    }
    let count = |s: &str| statuses.get(s).copied().unwrap_or(0);
    let faults = tally.faults.lock().unwrap();
    let fault_list: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let reason_list: Vec<String> = reasons.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("| measurement | value |");
    println!("| --- | --- |");
    println!(
        "| orders placed | {} in {:.0} s ({} not accepted) |",
        ids.len(),
        run.placed_in.as_secs_f64(),
        tally.refused.load(Ordering::Relaxed)
    );
    println!("| confirmed | {} |", count("confirmed"));
    println!(
        "| cancelled | {} ({}) |",
        count("cancelled"),
        reason_list.join(", ")
    );
    println!(
        "| still pending or reserved | {} |",
        count("pending") + count("reserved")
    );
    println!(
        "| customer cancel requests | {} |",
        tally.cancel_requests.load(Ordering::Relaxed)
    );
    println!("| duplicated effects | {} |", run.duplicates.len());
    println!("| invariant violations | {} |", run.violations.len());
    let secs = |d: Option<Duration>| {
        d.map_or("not within the limit".into(), |d| {
            format!("{:.0} s", d.as_secs_f64())
        })
    };
    println!(
        "| after the last order: every order final / every invariant holds | {} / {} |",
        secs(run.all_final),
        secs(run.clean)
    );
    println!(
        "| faults injected ({}) | {} |",
        faults.values().sum::<usize>(),
        fault_list.join(", ")
    );
    println!(
        "| events published a second time | {} |",
        tally.republished.load(Ordering::Relaxed)
    );
    for line in run.duplicates.iter().chain(&run.violations).take(40) {
        println!("  {line}");
    }
}
