//! IPv4 subnets and addresses of overlay networks: carving subnets from the default address
//! pool, and handing out free addresses. Subnets are `ipnetwork`'s [`Ipv4Network`], the type
//! the store, the mesh view and the data plane share (docs/model.md).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("no default address pool to take a subnet from; give the network a --subnet")]
    NoPool,
    #[error(
        "the default address pool {pool} has no free /{mask} subnet left; remove unused \
         networks or give the network a --subnet"
    )]
    PoolExhausted { pool: Ipv4Network, mask: u8 },
    #[error(
        "the default address pool mask length {mask} does not fit the pool {pool}; it must be \
         between the pool's prefix length and 30"
    )]
    BadMask { pool: Ipv4Network, mask: u8 },
}

/// `addr` with `prefix`, as tasks and VIPs record it (`10.0.0.7/24`); `prefix` comes from a
/// subnet, so it is at most 32.
fn with_prefix(addr: Ipv4Addr, prefix: u8) -> Ipv4Network {
    Ipv4Network::new(addr, prefix).unwrap_or_else(|_| Ipv4Network::from(addr))
}

/// `subnet` without host bits (`10.0.1.9/24` is `10.0.1.0/24`).
pub fn canonical(subnet: Ipv4Network) -> Ipv4Network {
    with_prefix(subnet.network(), subnet.prefix())
}

/// The first usable host address (`.1` of a /24), Docker's default gateway.
pub fn first_host(subnet: Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// Host addresses of `subnet`, in order, without the network and broadcast addresses.
fn hosts(subnet: Ipv4Network) -> impl Iterator<Item = Ipv4Addr> {
    let (base, last) = (u32::from(subnet.network()), u32::from(subnet.broadcast()));
    let (first, last) = if subnet.prefix() >= 31 {
        (base, last)
    } else {
        (base + 1, last - 1)
    };
    (first..=last).map(Ipv4Addr::from)
}

/// The first `/mask` subnet of `pool` that overlaps none of `used`.
pub fn carve(pool: Ipv4Network, mask: u8, used: &[Ipv4Network]) -> Result<Ipv4Network, IpamError> {
    if mask < pool.prefix() || mask > 30 {
        return Err(IpamError::BadMask { pool, mask });
    }
    let step = 1u64 << (32 - u32::from(mask));
    let mut base = u64::from(u32::from(pool.network()));
    let end = u64::from(u32::from(pool.broadcast()));
    while base <= end {
        let base_addr = u32::try_from(base).map_err(|_| IpamError::PoolExhausted { pool, mask })?;
        let candidate = with_prefix(Ipv4Addr::from(base_addr), mask);
        if !used.iter().any(|u| u.overlaps(candidate)) {
            return Ok(candidate);
        }
        base += step;
    }
    Err(IpamError::PoolExhausted { pool, mask })
}

/// Addresses of one network: its subnet (and optional range), and what is taken.
#[derive(Debug, Clone)]
pub struct AddressPool {
    pub subnet: Ipv4Network,
    range: Ipv4Network,
    used: BTreeSet<Ipv4Addr>,
}

impl AddressPool {
    /// `gateway` is reserved; `range` (empty: the whole subnet) limits where addresses come from.
    pub fn new(subnet: Ipv4Network, range: Option<Ipv4Network>, gateway: Option<Ipv4Addr>) -> Self {
        let subnet = canonical(subnet);
        Self {
            subnet,
            range: range.map_or(subnet, canonical),
            used: gateway.into_iter().collect(),
        }
    }

    /// Marks `addr` taken (an existing allocation read from the store).
    pub fn reserve(&mut self, addr: Ipv4Addr) {
        self.used.insert(addr);
    }

    pub fn is_free(&self, addr: Ipv4Addr) -> bool {
        self.subnet.contains(addr) && !self.used.contains(&addr)
    }

    /// Gives back an address [`AddressPool::allocate`] handed out.
    pub fn release(&mut self, addr: Ipv4Addr) {
        self.used.remove(&addr);
    }

    /// The lowest free address, now taken, with the subnet's prefix (`10.0.0.7/24`); `None`
    /// when exhausted.
    pub fn allocate(&mut self) -> Option<Ipv4Network> {
        let addr =
            hosts(self.range).find(|a| self.subnet.contains(*a) && !self.used.contains(a))?;
        self.used.insert(addr);
        Some(with_prefix(addr, self.subnet.prefix()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_subnets_have_no_host_bits() {
        assert_eq!(canonical(subnet("10.0.1.9/24")).to_string(), "10.0.1.0/24");
        assert_eq!(
            first_host(subnet("10.0.1.0/24")),
            Ipv4Addr::new(10, 0, 1, 1)
        );
    }

    #[test]
    fn carves_the_first_free_subnet() {
        let pool = subnet("10.0.0.0/8");
        let used = [subnet("10.0.0.0/24"), subnet("10.0.2.0/23")];
        assert_eq!(carve(pool, 24, &used), Ok(subnet("10.0.1.0/24")));
        let used = [subnet("10.0.0.0/9")];
        assert_eq!(carve(pool, 24, &used), Ok(subnet("10.128.0.0/24")));
        assert!(matches!(
            carve(subnet("10.0.0.0/24"), 24, &[subnet("10.0.0.0/16")]),
            Err(IpamError::PoolExhausted { .. })
        ));
    }

    #[test]
    fn hands_out_free_host_addresses_until_exhausted() {
        let gateway = Ipv4Addr::new(10, 0, 0, 1);
        let mut pool = AddressPool::new(subnet("10.0.0.0/29"), None, Some(gateway));
        pool.reserve(Ipv4Addr::new(10, 0, 0, 3));
        let got: Vec<_> = std::iter::from_fn(|| pool.allocate())
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            got,
            ["10.0.0.2/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"]
        );
    }
}
