//! fermyon:spin/mqtt@2.0.0 against a real Mosquitto: publishes at each QoS reach a subscriber,
//! `allowed_outbound_hosts` decides which brokers a component may open (with Spin's exact
//! `connection-failed` text for the others), and a broker that is down is an error the guest
//! sees, not a trap.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};
use testkit::{Host, MosquittoServer};

fn start_host(broker: &MosquittoServer) -> Host {
    Host::start(support::options("mqtt.toml").variable("mqtt_port", &broker.port().to_string()))
}

fn encode(text: &str) -> String {
    text.replace('%', "%25")
        .replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('&', "%26")
        .replace('=', "%3D")
}

/// What the probe under `prefix` reports after opening `address` and publishing `payload` to
/// `topic` `count` times at `qos` (0, 1 or 2). The probe reports errors in a 200 answer, so any
/// other status is the host failing (a trap is a 500).
fn publish(
    host: &Host,
    prefix: &str,
    address: &str,
    topic: &str,
    qos: u8,
    count: usize,
    payload: &str,
) -> Value {
    let path = format!(
        "{prefix}/mqtt/publish?address={}&topic={}&qos={qos}&count={count}&username=shop&password=secret",
        encode(address),
        encode(topic)
    );
    let response = host.post(&path, payload.as_bytes());
    assert_eq!(response.status, 200, "POST {path}: {}", response.body);
    response.json()
}

/// A subscriber on the broker (rumqttc, QoS 2, so each message arrives at the QoS it was
/// published with), subscribed before `start` returns.
struct Subscriber {
    client: Client,
    received: mpsc::Receiver<Publish>,
}

impl Subscriber {
    fn start(broker: &MosquittoServer, topic: &str) -> Self {
        static SUBSCRIBERS: AtomicUsize = AtomicUsize::new(0);
        let id = format!("subscriber{}", SUBSCRIBERS.fetch_add(1, Ordering::Relaxed));
        let options = MqttOptions::new(id, "127.0.0.1", broker.port());
        let (client, mut connection) = Client::new(options, 10);
        client
            .subscribe(topic, QoS::ExactlyOnce)
            .expect("queue SUBSCRIBE");
        let (subscribed, acknowledged) = mpsc::channel();
        let (deliver, received) = mpsc::channel();
        thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(message))) => {
                        if deliver.send(message).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        acknowledged
            .recv_timeout(Duration::from_secs(10))
            .expect("the broker acknowledges the subscription");
        Subscriber { client, received }
    }

    /// The next message, waiting for it (deliveries have no other completion signal).
    fn next(&self) -> Publish {
        self.received
            .recv_timeout(Duration::from_secs(10))
            .expect("a message reaches the subscriber")
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

#[test]
fn publishes_reach_a_subscriber_at_each_qos() {
    let broker = MosquittoServer::start();
    let host = start_host(&broker);
    let subscriber = Subscriber::start(&broker, "shop/#");
    for (qos, expected) in [
        (0, QoS::AtMostOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ] {
        let topic = format!("shop/qos{qos}");
        let payload = format!("order paid at QoS {qos}");
        let address = broker.address(&format!("probe-qos{qos}"));
        let reply = publish(&host, "/open", &address, &topic, qos, 1, &payload);
        assert_eq!(reply, json!({ "published": 1 }), "QoS {qos}");
        let message = subscriber.next();
        assert_eq!(message.topic, topic);
        assert_eq!(&message.payload[..], payload.as_bytes());
        assert_eq!(message.qos, expected, "published at QoS {qos}");
    }

    // One connection serves several publishes, each acknowledged before the next.
    let reply = publish(
        &host,
        "/open",
        &broker.address("probe-many"),
        "shop/many",
        1,
        3,
        "again",
    );
    assert_eq!(reply, json!({ "published": 3 }));
    for _ in 0..3 {
        let message = subscriber.next();
        assert_eq!(
            (message.topic.as_str(), &message.payload[..]),
            ("shop/many", &b"again"[..])
        );
    }

    // `mqtt://{{ mqtt_host }}:{{ mqtt_port }}`: variables in grants are expanded.
    let reply = publish(
        &host,
        "/templated",
        &broker.address("probe-templated"),
        "shop/templated",
        2,
        1,
        "from a templated grant",
    );
    assert_eq!(reply, json!({ "published": 1 }));
    assert_eq!(&subscriber.next().payload[..], b"from a templated grant");
}

#[test]
fn addresses_outside_allowed_outbound_hosts_are_refused_with_spins_text() {
    let broker = MosquittoServer::start();
    let host = start_host(&broker);

    // The conformance suite's case: a manifest without an mqtt grant.
    let refused = "mqtt://localhost:1883?client_id=spintest";
    let reply = publish(&host, "/closed", refused, "shop/x", 1, 1, "x");
    assert_eq!(
        reply,
        json!({
            "step": "open",
            "published": 0,
            "error": "connection-failed",
            "detail": "address mqtt://localhost:1883?client_id=spintest is not permitted",
        })
    );
    // redis:// and tcp:// grants to the broker's own address do not grant MQTT.
    let address = broker.address("probe-closed");
    let reply = publish(&host, "/closed", &address, "shop/x", 1, 1, "x");
    assert_eq!(reply["error"], "connection-failed", "{reply}");
    assert_eq!(
        reply["detail"],
        format!("address {address} is not permitted")
    );

    // A grant without a port means 1883: the broker's port is refused, 1883 passes the check
    // (`open` does not connect, so whatever listens there or not, `open` succeeds).
    let reply = publish(&host, "/default-port", &address, "shop/x", 0, 1, "x");
    assert_eq!(reply["error"], "connection-failed", "{reply}");
    assert_eq!(reply["step"], "open", "{reply}");
    let reply = publish(
        &host,
        "/default-port",
        "mqtt://127.0.0.1:1883?client_id=probe-default",
        "shop/x",
        0,
        1,
        "x",
    );
    assert_ne!(reply["step"], "open", "1883 is granted: {reply}");

    // A granted address that rumqttc cannot use: no client_id, an unknown option.
    let port = broker.port();
    for address in [
        format!("mqtt://127.0.0.1:{port}"),
        format!("mqtt://127.0.0.1:{port}?client_id=a&colour=blue"),
    ] {
        let reply = publish(&host, "/open", &address, "shop/x", 1, 1, "x");
        assert_eq!(
            (&reply["step"], &reply["error"]),
            (&json!("open"), &json!("invalid-address")),
            "{address}: {reply}"
        );
    }
    assert!(
        host.logs()
            .contains("mqtt address denied by allowed_outbound_hosts"),
        "a refusal is logged"
    );
}

#[test]
fn a_broker_that_is_down_is_a_connection_error_for_the_guest() {
    let mut broker = MosquittoServer::start();
    let host = start_host(&broker);
    let address = broker.address("probe-down");
    broker.stop();

    for qos in [0, 1, 2] {
        let reply = publish(&host, "/open", &address, "shop/down", qos, 1, "lost");
        assert_eq!(reply["step"], "publish", "open does not connect: {reply}");
        assert_eq!(reply["error"], "connection-failed", "{reply}");
        let detail = reply["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("Connection refused"),
            "rumqttc's error is passed on: {reply}"
        );
    }

    // The broker is back: the next instance connects and publishes.
    broker.restart();
    let subscriber = Subscriber::start(&broker, "shop/back");
    let reply = publish(&host, "/open", &address, "shop/back", 1, 1, "back");
    assert_eq!(reply, json!({ "published": 1 }));
    assert_eq!(&subscriber.next().payload[..], b"back");
}
