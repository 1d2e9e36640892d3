//! `fermyon:spin/mqtt@2.0.0`: outbound MQTT publishing as Spin's `factor-outbound-mqtt`
//! (`src/host.rs`, `src/lib.rs`) does it, on the same client library (rumqttc 0.25).
//!
//! - `open` checks the address against the component's `allowed_outbound_hosts` (scheme `mqtt`
//!   when the address has none, default port 1883) and refuses it with
//!   `connection-failed("address <address> is not permitted")`, Spin's own words, which guests
//!   and Spin's conformance tests match. An address that cannot be parsed is refused the same
//!   way (Spin's check says "not allowed" to it before anything else).
//! - rumqttc then reads the address: `mqtt://` (or `tcp://`, `mqtts://`, `ssl://`), host, port
//!   and a required `client_id` query parameter (rumqttc's other options, `clean_session`,
//!   `inflight_num`, ..., may follow; any unknown one is an error). A missing `client_id` or an
//!   unknown scheme or parameter is `invalid-address`. The `username`, `password` and
//!   keep-alive arguments always win over any given in the address. `open` does not connect.
//! - `publish` queues the message on the handle's event loop and polls the loop until the
//!   message is written (QoS 0), acknowledged (`PUBACK`, QoS 1) or complete (`PUBCOMP`, QoS
//!   2). The first `publish` connects. A failure to connect or while waiting is
//!   `connection-failed(<rumqttc's error>)`, and the next `publish` on the handle tries again.
//! - Timeouts are rumqttc's, as in Spin, which sets none of its own: 5 s to connect (TCP, TLS
//!   and `CONNACK`) and for each write. Waiting for an acknowledgement has none: the loop, only
//!   polled inside `publish` as in Spin, sends keep-alive pings meanwhile and fails after two
//!   unanswered ones; with a keep-alive of 0 only the instance's deadline ends the wait.
//! - At most 1024 connections open at once per instance (`too-many-connections` after), the
//!   size of Spin's per-instance table. `[outbound_mqtt]` limits (`max_connections`,
//!   `max_payload_size_bytes`) are not enforced here (README).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tracing::instrument;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use crate::bindings::imports::fermyon::spin2_0_0::mqtt::{self as spin_mqtt, Error, Qos};
use crate::outbound_http::OutboundRules;

/// Requests queued on a connection's event loop before `publish` waits (Spin's
/// `MQTT_CHANNEL_CAP`).
const CHANNEL_CAPACITY: usize = 1000;

/// Connections an instance may hold open at once (Spin's table capacity).
const MAX_CONNECTIONS: usize = 1024;

/// An opened connection (the guest's `connection` resource): rumqttc's client and the event
/// loop that owns the network connection, made by the first `publish`.
pub struct OpenConnection {
    client: AsyncClient,
    event_loop: EventLoop,
}

impl OpenConnection {
    fn new(options: MqttOptions) -> Self {
        let (client, event_loop) = AsyncClient::new(options, CHANNEL_CAPACITY);
        Self { client, event_loop }
    }

    /// Publishes and drives the event loop until the message has gone as far as `qos` asks.
    async fn publish(&mut self, topic: String, payload: Vec<u8>, qos: Qos) -> Result<(), Error> {
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        };
        self.client
            .publish_bytes(topic, qos, false, payload.into())
            .await
            .map_err(|e| Error::Other(e.to_string()))?;
        loop {
            let event = self
                .event_loop
                .poll()
                .await
                .map_err(|e| Error::ConnectionFailed(e.to_string()))?;
            if is_done(qos, &event) {
                return Ok(());
            }
        }
    }
}

/// Whether `event` is the one that ends a publish at `qos`, as Spin's loop decides it.
fn is_done(qos: QoS, event: &Event) -> bool {
    matches!(
        (qos, event),
        (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
            | (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_)))
            | (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_)))
    )
}

/// The client options for `open`, as Spin builds them: rumqttc reads the address, then the
/// arguments set the credentials (empty ones included) and the keep-alive interval.
fn options(
    address: &str,
    username: String,
    password: String,
    keep_alive_secs: u64,
) -> Result<MqttOptions, Error> {
    let mut options = MqttOptions::parse_url(address).map_err(|e| {
        tracing::warn!(address = %address, error = %e, "invalid MQTT address");
        Error::InvalidAddress
    })?;
    options.set_credentials(username, password);
    // Whole seconds: rumqttc's check (zero or at least a second) always holds.
    options.set_keep_alive(Duration::from_secs(keep_alive_secs));
    Ok(options)
}

/// Per-instance state: the component's outbound rules and its open connections.
pub struct MqttState {
    rules: Arc<OutboundRules>,
    table: ResourceTable,
    open: usize,
}

impl MqttState {
    pub fn new(rules: Arc<OutboundRules>) -> Self {
        Self {
            rules,
            table: ResourceTable::new(),
            open: 0,
        }
    }
}

/// Links `fermyon:spin/mqtt@2.0.0` to the [`MqttState`] that `get` finds in the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut MqttState,
) -> Result<()> {
    spin_mqtt::add_to_linker::<_, HasSelf<MqttState>>(linker, get)?;
    Ok(())
}

impl spin_mqtt::Host for MqttState {}

impl spin_mqtt::HostConnection for MqttState {
    #[instrument(name = "spin_outbound_mqtt.open_connection", skip_all, fields(otel.kind = "client", messaging.system = "mqtt"))]
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, Error>> {
        if !self.rules.allows_address(&address, "mqtt") {
            tracing::warn!(address = %address, "mqtt address denied by allowed_outbound_hosts");
            return Ok(Err(Error::ConnectionFailed(format!(
                "address {address} is not permitted"
            ))));
        }
        let options = match options(&address, username, password, keep_alive_interval_in_secs) {
            Ok(options) => options,
            Err(e) => return Ok(Err(e)),
        };
        if self.open >= MAX_CONNECTIONS {
            return Ok(Err(Error::TooManyConnections));
        }
        let handle = self.table.push(OpenConnection::new(options))?;
        self.open += 1;
        Ok(Ok(handle))
    }

    #[instrument(name = "spin_outbound_mqtt.publish", skip_all, fields(otel.kind = "producer", messaging.operation = "publish", messaging.system = "mqtt", messaging.destination.name = %topic))]
    async fn publish(
        &mut self,
        handle: Resource<OpenConnection>,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        let connection = self.table.get_mut(&handle)?;
        let result = connection.publish(topic, payload, qos).await;
        if let Err(error) = &result {
            tracing::info!(error = ?error, "mqtt publish failed");
        }
        Ok(result)
    }

    async fn drop(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.open -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spin_host_config::allowed_hosts::AllowedHosts;
    use spin_mqtt::HostConnection;

    fn instance(allowed: &[&str]) -> MqttState {
        let allowed = AllowedHosts::new(allowed, &[]).unwrap();
        MqttState::new(Arc::new(OutboundRules::new(allowed)))
    }

    async fn open(state: &mut MqttState, address: &str) -> Result<Resource<OpenConnection>, Error> {
        state
            .open(address.into(), "user".into(), "secret".into(), 30)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_refused_address_fails_with_spins_words() {
        let mut state = instance(&[]);
        let address = "mqtt://localhost:1883?client_id=spintest";
        match open(&mut state, address).await {
            Err(Error::ConnectionFailed(text)) => assert_eq!(
                text,
                "address mqtt://localhost:1883?client_id=spintest is not permitted"
            ),
            other => panic!("expected connection-failed, got {:?}", other.map(|_| ())),
        }
        let mut other_port = instance(&["mqtt://localhost:1884"]);
        assert!(matches!(
            open(&mut other_port, address).await,
            Err(Error::ConnectionFailed(_))
        ));
    }

    #[tokio::test]
    async fn the_default_port_is_1883_and_open_does_not_connect() {
        // Nothing listens on mqtt.invalid: open succeeds all the same, as in Spin.
        let mut state = instance(&["mqtt://mqtt.invalid"]);
        assert!(open(&mut state, "mqtt://mqtt.invalid?client_id=a")
            .await
            .is_ok());
        assert!(open(&mut state, "mqtt://mqtt.invalid:1883?client_id=a")
            .await
            .is_ok());
        assert!(matches!(
            open(&mut state, "mqtt://mqtt.invalid:1884?client_id=a").await,
            Err(Error::ConnectionFailed(_))
        ));
    }

    #[tokio::test]
    async fn a_permitted_address_without_client_id_or_with_unknown_options_is_invalid() {
        let mut state = instance(&["mqtt://*:*", "http://*:*"]);
        for address in [
            "mqtt://127.0.0.1:1883",
            "mqtt://127.0.0.1:1883?client_id=a&colour=blue",
            "http://127.0.0.1:1883?client_id=a",
        ] {
            assert!(
                matches!(open(&mut state, address).await, Err(Error::InvalidAddress)),
                "{address}"
            );
        }
    }

    #[tokio::test]
    async fn an_instance_holds_at_most_1024_connections() {
        let mut state = instance(&["mqtt://*:*"]);
        let mut handles = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            handles.push(
                open(&mut state, "mqtt://127.0.0.1?client_id=a")
                    .await
                    .unwrap(),
            );
        }
        assert!(matches!(
            open(&mut state, "mqtt://127.0.0.1?client_id=a").await,
            Err(Error::TooManyConnections)
        ));
        state.drop(handles.pop().unwrap()).await.unwrap();
        assert!(open(&mut state, "mqtt://127.0.0.1?client_id=a")
            .await
            .is_ok());
    }

    #[test]
    fn each_qos_ends_at_its_own_event() {
        use rumqttc::{PubAck, PubComp, Publish};
        let written = Event::Outgoing(Outgoing::Publish(1));
        let acked = Event::Incoming(Incoming::PubAck(PubAck::new(1)));
        let completed = Event::Incoming(Incoming::PubComp(PubComp::new(1)));
        let received = Event::Incoming(Incoming::Publish(Publish::new("t", QoS::AtMostOnce, "x")));
        assert!(is_done(QoS::AtMostOnce, &written));
        assert!(!is_done(QoS::AtLeastOnce, &written));
        assert!(is_done(QoS::AtLeastOnce, &acked));
        assert!(!is_done(QoS::ExactlyOnce, &acked));
        assert!(is_done(QoS::ExactlyOnce, &completed));
        assert!(!is_done(QoS::AtMostOnce, &received));
    }
}
