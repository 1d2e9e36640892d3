//! Redis trigger: delivery, fan-out to every component on a channel, one subscription per
//! address, failing handlers, reconnect.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use testkit::{eventually, Host, RedisServer};

const WAIT: Duration = Duration::from_secs(20);

fn start(redis: &RedisServer, fixture: &str) -> Host {
    let host = Host::start(support::options(fixture).variable("redis_address", &redis.address()));
    wait_subscribed(&host, redis, "events");
    host
}

/// Health says HTTP is up; the subscription may come a moment later.
fn wait_subscribed(host: &Host, redis: &RedisServer, channel: &str) {
    let subscribed = eventually(WAIT, || (redis.subscribers(channel) > 0).then_some(()));
    assert!(
        subscribed.is_some(),
        "the host never subscribed to {channel}; its output:\n{}",
        host.logs()
    );
}

/// What sink `key` has recorded, read through the probe's key-value route.
fn received(host: &Host, key: &str) -> Value {
    let reply = host.get(&format!("/kv/default/get?key={key}")).json();
    match reply["value"].as_str() {
        Some(list) => serde_json::from_str(list).expect("sink stores a JSON list"),
        None => json!([]),
    }
}

fn wait_received(host: &Host, key: &str, expected: Value) {
    let got = eventually(WAIT, || {
        let got = received(host, key);
        (got == expected).then_some(got)
    });
    assert!(
        got.is_some(),
        "{key}: expected {expected}, got {}; host output:\n{}",
        received(host, key),
        host.logs()
    );
}

#[test]
fn every_component_on_a_channel_gets_each_message_in_order() {
    let redis = RedisServer::start();
    let host = start(&redis, "redis.toml");
    wait_subscribed(&host, &redis, "other");
    for message in ["m1", "m2", "m3"] {
        redis.publish("events", message);
    }
    redis.publish("other", "elsewhere");
    wait_received(&host, "sink-a", json!(["m1", "m2", "m3"]));
    wait_received(&host, "sink-b", json!(["m1", "m2", "m3"]));
    wait_received(&host, "sink-c", json!(["elsewhere"]));
}

#[test]
fn a_slow_handler_holds_up_its_own_subscription_only() {
    let redis = RedisServer::start();
    let host = start(&redis, "redis-subscriptions.toml");
    wait_subscribed(&host, &redis, "shared");
    wait_subscribed(&host, &redis, "own");
    redis.publish("events", "sleep-4000");
    redis.publish("shared", "queued");
    redis.publish("own", "own");

    // sink-c's address is its own, so its subscription goes on while sink-a sleeps...
    wait_received(&host, "sink-c", json!(["own"]));
    assert_eq!(
        received(&host, "sink-a"),
        json!([]),
        "sink-a is still asleep"
    );
    assert_eq!(
        received(&host, "sink-b"),
        json!([]),
        "sink-b shares sink-a's subscription, so its message waits for sink-a's"
    );
    // ...and the shared one handles its next message once sink-a's handler has returned.
    wait_received(&host, "sink-b", json!(["queued"]));
    assert_eq!(received(&host, "sink-a"), json!(["sleep-4000"]));
}

#[test]
fn a_failing_handler_is_logged_and_the_subscriber_goes_on() {
    let redis = RedisServer::start();
    let host = start(&redis, "redis.toml");
    redis.publish("events", "before");
    redis.publish("events", "fail");
    redis.publish("events", "after");
    wait_received(&host, "sink-a", json!(["before", "after"]));
    wait_received(&host, "sink-b", json!(["before", "after"]));
    for component in ["sink-a", "sink-b"] {
        let failures = eventually(WAIT, || {
            let lines = log_lines(&host);
            let forwarded = lines
                .iter()
                .filter(|line| {
                    line["component"] == component && line["message"] == "redis-sink asked to fail"
                })
                .count();
            let errors = lines
                .iter()
                .filter(|line| line["component"] == component && line["level"] == "ERROR")
                .count();
            (forwarded > 0 && errors > 0).then_some((forwarded, errors))
        });
        assert_eq!(
            failures,
            Some((1, 1)),
            "{component}: its stderr line forwarded with its id and one error logged, once \
             (never retried); host output:\n{}",
            host.logs()
        );
    }
}

/// A handler still running at its instance's deadline (here asleep in a host call, where the
/// epoch deadline cannot reach it) is stopped there and counts as a failed message: logged,
/// never retried, and the next message is handled.
#[test]
fn a_handler_past_its_deadline_is_stopped_and_counted_as_failed() {
    let redis = RedisServer::start();
    let host = Host::start(
        support::options("redis.toml")
            .variable("redis_address", &redis.address())
            .args(["--instance-timeout-secs", "1"]),
    );
    wait_subscribed(&host, &redis, "events");
    let started = std::time::Instant::now();
    redis.publish("events", "sleep-15000");
    redis.publish("events", "after");
    wait_received(&host, "sink-a", json!(["after"]));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the next message waited {took:?}, past the 1 s deadline"
    );
    let stopped = eventually(WAIT, || {
        let lines = log_lines(&host);
        let stopped = lines
            .iter()
            .filter(|line| {
                line["level"] == "ERROR"
                    && line["message"] == "message handler failed (not retried)"
                    && line["error"]
                        .as_str()
                        .is_some_and(|error| error.contains("ran past its deadline"))
            })
            .count();
        (stopped >= 2).then_some(stopped)
    });
    assert_eq!(
        stopped,
        Some(2),
        "sink-a and sink-b each logged one failure naming the deadline; host output:\n{}",
        host.logs()
    );
    wait_received(&host, "sink-b", json!(["after"]));
}

/// The host's JSON log lines (other output is ignored).
fn log_lines(host: &Host) -> Vec<Value> {
    host.logs()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn the_trigger_reconnects_after_a_redis_restart() {
    let mut redis = RedisServer::start();
    let host = start(&redis, "redis.toml");
    redis.publish("events", "before-restart");
    wait_received(&host, "sink-a", json!(["before-restart"]));

    redis.restart();
    wait_subscribed(&host, &redis, "events");
    redis.publish("events", "after-restart");
    wait_received(&host, "sink-a", json!(["before-restart", "after-restart"]));
    wait_received(&host, "sink-b", json!(["before-restart", "after-restart"]));
    assert!(
        host.logs().to_lowercase().contains("reconnect"),
        "the host must say it reconnects:\n{}",
        host.logs()
    );
}

#[test]
fn a_component_with_redis_and_http_triggers_serves_both() {
    let redis = RedisServer::start();
    let host = start(&redis, "redis-http.toml");
    redis.publish("events", "hello");
    let got = eventually(WAIT, || {
        let reply = host.get("/sink").json();
        (reply["received"] == json!(["hello"])).then_some(reply)
    });
    assert!(
        got.is_some(),
        "GET /sink never listed the message; host output:\n{}",
        host.logs()
    );
}

/// Each thread of process `pid` as (name, nice value), from `/proc`.
#[cfg(target_os = "linux")]
fn threads(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the host's threads");
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            // "tid (name) state ppid ...": the nice value is the 19th field, the 17th after
            // the closing parenthesis (a name may hold spaces).
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_string();
            let nice = rest.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn handlers_run_on_threads_of_their_own_at_a_lower_priority() {
    let redis = RedisServer::start();
    let host = start(&redis, "redis.toml");
    redis.publish("events", "m1");
    wait_received(&host, "sink-a", json!(["m1"]));
    let threads = threads(host.pid());
    let nice_of = |prefix: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, nice)| *nice)
            .collect()
    };
    let background = nice_of("redis-trigger");
    assert!(
        !background.is_empty() && background.iter().all(|nice| *nice == 10),
        "Redis trigger threads at nice 10 expected: {threads:?}"
    );
    let requests = nice_of("tokio-rt-worker");
    assert!(
        !requests.is_empty() && requests.iter().all(|nice| *nice == 0),
        "request threads at the default priority expected: {threads:?}"
    );
}
