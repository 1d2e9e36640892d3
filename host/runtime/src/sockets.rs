//! `wasi:sockets`, gated as Spin gates it (`factor-outbound-networking/src/lib.rs`, with
//! `factor-wasi`'s `outbound_socket_addr_check`): a guest may open a TCP connection to an address
//! its component's `allowed_outbound_hosts` allow as `tcp://<ip>:<port>`
//! ([`AllowedHosts::allows_socket`](spin_host_config::allowed_hosts::AllowedHosts::allows_socket):
//! exact IPs, CIDR ranges, port numbers, ranges and `*`, `{{ variable }}` templates expanded at
//! start-up). Any other connection fails with `access-denied` when the guest finishes connecting.
//! The guest cannot bind to an address of its choice, listen or accept, and gets no name lookups
//! (`wasi:sockets/ip-name-lookup` fails), as in Spin.
//!
//! Wasmtime 48 asks about more uses than the Wasmtime Spin builds on: it checks the implicit bind
//! of a `connect` on an unbound socket as a bind to the wildcard address, port 0, which Spin's
//! rule (every bind refused) would turn into a refusal of every connection. That one bind is
//! allowed, and with it an explicit bind to the wildcard address and port 0, which is no more
//! than what the connect does anyway. UDP stays off in this host (`UDP is not allowed`); Spin
//! allows datagrams to `udp://` hosts.

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::WasiCtxBuilder;

use crate::outbound_http::OutboundRules;

/// Lets the instance's TCP connections through to the addresses its component may reach.
pub fn configure(wasi: &mut WasiCtxBuilder, component: Arc<str>, rules: Arc<OutboundRules>) {
    wasi.allow_tcp(true)
        .allow_udp(false)
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
        SocketAddrUse::TcpListen
        | SocketAddrUse::TcpAccept
        | SocketAddrUse::UdpBind
        | SocketAddrUse::UdpSend
        | SocketAddrUse::UdpReceive => false,
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
    fn no_listening_accepting_or_udp_even_when_everything_is_allowed() {
        let all = rules(&["*://*:*"]);
        for addr_use in [
            SocketAddrUse::TcpListen,
            SocketAddrUse::TcpAccept,
            SocketAddrUse::UdpBind,
            SocketAddrUse::UdpSend,
            SocketAddrUse::UdpReceive,
        ] {
            assert!(
                !permitted(&all, addr("127.0.0.1:7"), addr_use),
                "{addr_use:?}"
            );
        }
    }
}
