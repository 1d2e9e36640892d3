//! `wasi:sockets`, gated as Spin gates it (`factor-outbound-networking/src/lib.rs`, with
//! `factor-wasi/src/lib.rs`'s `outbound_socket_addr_check`): every address a guest uses is checked
//! against its component's `allowed_outbound_hosts` as the URL `<scheme>://<ip>:<port>`
//! ([`AllowedHosts::allows_socket`](spin_host_config::allowed_hosts::AllowedHosts::allows_socket):
//! exact IPs, CIDR ranges, port numbers, ranges and `*`, `{{ variable }}` templates expanded at
//! start-up), with the scheme `tcp` for a TCP connect and `udp` for every UDP use (so `*://`
//! grants both):
//! - TCP: a connection to an allowed address; any other fails with `access-denied` when the
//!   guest finishes connecting. No bind of the guest's choosing, no listening or accepting.
//! - UDP: the bind (WASI 0.2 makes the guest bind before it sends) and each destination (of
//!   `stream(remote)` or of a datagram) must be allowed as `udp://`; a refused one fails with
//!   `access-denied`. Spin checks the bind address like a destination, so a guest that binds to
//!   `0.0.0.0:0` needs a grant such as `udp://0.0.0.0:0` (or `udp://*:*`) beside its
//!   destinations. Datagrams received are not checked (Spin's Wasmtime has no such check).
//! - No name lookups: `wasi:sockets/ip-name-lookup` fails with `permanent-resolver-failure`
//!   whatever the grants, as in Spin (spinframework/spin#2181).
//!
//! Wasmtime 48 asks about more uses than the Wasmtime Spin builds on: it checks the implicit bind
//! of a `connect` on an unbound TCP socket as a bind to the wildcard address, port 0, which Spin's
//! rule (every TCP bind refused) would turn into a refusal of every connection. That one bind is
//! allowed, and with it an explicit bind to the wildcard address and port 0, which is no more
//! than what the connect does anyway. It also checks received datagrams (`UdpReceive`), which
//! Spin does not: they all pass.

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

use crate::outbound_http::OutboundRules;

/// Lets the instance's TCP and UDP sockets reach the addresses its component may reach.
pub fn configure(wasi: &mut WasiCtxBuilder, component: Arc<str>, rules: Arc<OutboundRules>) {
    // Spin leaves these at its Wasmtime's defaults: TCP and UDP on, name lookups off.
    wasi.allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(false);
    wasi.socket_addr_check(move |addr, addr_use| {
        let allowed = permitted(&rules, addr, addr_use);
        if !allowed {
            tracing::warn!(component = %component, address = %addr, use = ?addr_use, "socket denied by allowed_outbound_hosts");
        }
        Box::pin(std::future::ready(allowed))
    });
}

/// Whether `addr` may be used so.
fn permitted(rules: &OutboundRules, addr: SocketAddr, addr_use: SocketAddrUse) -> bool {
    match addr_use {
        SocketAddrUse::TcpConnect => rules.allows_socket("tcp", addr),
        SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
        SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        // Spin's `UdpBind`, `UdpConnect` and `UdpOutgoingDatagram` (Wasmtime 48's `UdpSend`).
        SocketAddrUse::UdpBind | SocketAddrUse::UdpSend => rules.allows_socket("udp", addr),
        SocketAddrUse::UdpReceive => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spin_host_config::allowed_hosts::AllowedHosts;

    fn rules(entries: &[&str]) -> OutboundRules {
        OutboundRules::new(AllowedHosts::new(entries, &[]).unwrap())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_connections_follow_allowed_outbound_hosts() {
        let exact = rules(&["*://127.0.0.1:7"]);
        assert!(permitted(
            &exact,
            addr("127.0.0.1:7"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permitted(
            &exact,
            addr("127.0.0.2:7"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permitted(
            &exact,
            addr("127.0.0.1:8"),
            SocketAddrUse::TcpConnect
        ));
        let range = rules(&["tcp://127.0.0.0/24:*"]);
        assert!(permitted(
            &range,
            addr("127.0.0.9:6001"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permitted(
            &range,
            addr("10.0.0.1:6001"),
            SocketAddrUse::TcpConnect
        ));
        let http_only = rules(&["http://127.0.0.1:7"]);
        assert!(!permitted(
            &http_only,
            addr("127.0.0.1:7"),
            SocketAddrUse::TcpConnect
        ));
        assert!(!permitted(
            &rules(&[]),
            addr("127.0.0.1:7"),
            SocketAddrUse::TcpConnect
        ));
    }

    /// Wasmtime checks the implicit bind of a connect as a bind to the wildcard address, port 0.
    #[test]
    fn only_the_implicit_bind_of_a_connect_is_allowed() {
        let all = rules(&["*://*:*"]);
        for implicit in ["0.0.0.0:0", "[::]:0"] {
            assert!(permitted(&all, addr(implicit), SocketAddrUse::TcpBind));
            assert!(permitted(
                &rules(&[]),
                addr(implicit),
                SocketAddrUse::TcpBind
            ));
        }
        for explicit in ["127.0.0.1:0", "0.0.0.0:8080", "[::1]:0"] {
            assert!(!permitted(&all, addr(explicit), SocketAddrUse::TcpBind));
        }
    }

    #[test]
    fn no_listening_or_accepting_even_when_everything_is_allowed() {
        let all = rules(&["*://*:*"]);
        for addr_use in [SocketAddrUse::TcpListen, SocketAddrUse::TcpAccept] {
            assert!(
                !permitted(&all, addr("127.0.0.1:7"), addr_use),
                "{addr_use:?}"
            );
        }
    }

    #[test]
    fn udp_binds_and_destinations_follow_udp_grants() {
        let udp = rules(&["udp://127.0.0.1:7", "udp://0.0.0.0:0"]);
        for addr_use in [SocketAddrUse::UdpBind, SocketAddrUse::UdpSend] {
            assert!(
                permitted(&udp, addr("127.0.0.1:7"), addr_use),
                "{addr_use:?}"
            );
            assert!(
                !permitted(&udp, addr("127.0.0.1:8"), addr_use),
                "{addr_use:?}"
            );
            assert!(
                !permitted(&udp, addr("127.0.0.2:7"), addr_use),
                "{addr_use:?}"
            );
        }
        // The bind address is checked like a destination: the wildcard needs its own grant.
        assert!(permitted(&udp, addr("0.0.0.0:0"), SocketAddrUse::UdpBind));
        let destination_only = rules(&["udp://127.0.0.1:7"]);
        assert!(!permitted(
            &destination_only,
            addr("0.0.0.0:0"),
            SocketAddrUse::UdpBind
        ));
        assert!(permitted(
            &rules(&["*://127.0.0.1:7"]),
            addr("127.0.0.1:7"),
            SocketAddrUse::UdpSend
        ));
        for not_udp in [&["tcp://127.0.0.1:7"][..], &["http://127.0.0.1:7"], &[]] {
            assert!(!permitted(
                &rules(not_udp),
                addr("127.0.0.1:7"),
                SocketAddrUse::UdpSend
            ));
        }
    }

    /// Spin's Wasmtime does not check where a datagram comes from.
    #[test]
    fn received_datagrams_are_not_checked() {
        assert!(permitted(
            &rules(&[]),
            addr("10.0.0.1:53"),
            SocketAddrUse::UdpReceive
        ));
    }
}
