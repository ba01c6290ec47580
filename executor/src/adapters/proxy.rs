//! Which hosts bypass the proxy of `HTTPS_PROXY`, as kubectl and curl read `NO_PROXY`: `*`,
//! host names (`example.com` and `.example.com` both cover the domain and its subdomains), IP
//! addresses and CIDR ranges, a `:port` suffix ignored; loopback is never proxied (as Go does).

use std::net::IpAddr;

/// `NO_PROXY` (or `no_proxy`) of this process.
pub fn no_proxy_from_env() -> String {
    ["NO_PROXY", "no_proxy"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
        .unwrap_or_default()
}

/// Whether `host` (a name or an IP address, IPv6 possibly in brackets) is reached directly.
pub fn bypasses_proxy(host: &str, no_proxy: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let address: Option<IpAddr> = host.parse().ok();
    if host == "localhost" || address.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((network, bits)) = entry.split_once('/') {
                return match (network.parse::<IpAddr>(), bits.parse::<u32>(), address) {
                    (Ok(network), Ok(bits), Some(address)) => in_network(address, network, bits),
                    _ => false,
                };
            }
            let entry = strip_port(entry).to_ascii_lowercase();
            if let (Ok(entry), Some(address)) = (entry.parse::<IpAddr>(), address) {
                return entry == address;
            }
            let domain = entry.trim_start_matches("*.").trim_start_matches('.');
            !domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}")))
        })
}

fn strip_port(entry: &str) -> &str {
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => entry,
    }
}

fn in_network(address: IpAddr, network: IpAddr, bits: u32) -> bool {
    match (address, network) {
        (IpAddr::V4(address), IpAddr::V4(network)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(address) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(address), IpAddr::V6(network)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(address) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_entries_cover_domains_addresses_and_ranges() {
        let no_proxy = "internal.example,.corp.test:8443, 10.1.0.0/16,192.168.7.7";
        assert!(bypasses_proxy("api.internal.example", no_proxy));
        assert!(bypasses_proxy("internal.example", no_proxy));
        assert!(!bypasses_proxy("notinternal.example", no_proxy));
        assert!(bypasses_proxy("k8s.corp.test", no_proxy));
        assert!(bypasses_proxy("10.1.200.3", no_proxy));
        assert!(!bypasses_proxy("10.2.0.1", no_proxy));
        assert!(bypasses_proxy("192.168.7.7", no_proxy));
        assert!(!bypasses_proxy(
            "aks-1234.hcp.westeurope.azmk8s.io",
            no_proxy
        ));
        assert!(bypasses_proxy("anything", "*"));
    }

    #[test]
    fn loopback_is_never_proxied() {
        assert!(bypasses_proxy("127.0.0.1", ""));
        assert!(bypasses_proxy("127.20.15.1", ""));
        assert!(bypasses_proxy("[::1]", ""));
        assert!(bypasses_proxy("localhost", ""));
        assert!(!bypasses_proxy("example.com", ""));
    }
}
