//! IPv4 subnets and addresses of overlay networks: parsing CIDRs, carving subnets from the
//! default address pool, and handing out free addresses.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 subnet, `10.0.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    base: u32,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("\"{given}\" is not an IPv4 subnet in CIDR notation (like 10.0.1.0/24)")]
    BadSubnet { given: String },
    #[error("\"{given}\" is not an IPv4 address")]
    BadAddress { given: String },
    #[error(
        "the default address pool {pool} has no free /{mask} subnet left; remove unused \
         networks or give the network a --subnet"
    )]
    PoolExhausted { pool: Subnet, mask: u8 },
    #[error(
        "the default address pool mask length {mask} does not fit the pool {pool}; it must be \
         between the pool's prefix length and 30"
    )]
    BadMask { pool: Subnet, mask: u8 },
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        Some(Self {
            base: u32::from(addr) & mask(prefix),
            prefix,
        })
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    fn last(self) -> u32 {
        self.base | !mask(self.prefix)
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == self.base
    }

    pub fn overlaps(self, other: Subnet) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// The first usable host address (`.1` of a /24), Docker's default gateway.
    pub fn first_host(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base.saturating_add(1))
    }

    /// `addr` with this subnet's prefix length, as tasks and VIPs record it (`10.0.0.7/24`).
    pub fn cidr_of(self, addr: Ipv4Addr) -> String {
        format!("{addr}/{}", self.prefix)
    }

    /// Host addresses, in order, without the network and broadcast addresses.
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = if self.prefix >= 31 {
            (self.base, self.last())
        } else {
            (self.base + 1, self.last() - 1)
        };
        (first..=last).map(Ipv4Addr::from)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Subnet {
    type Err = IpamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpamError::BadSubnet {
            given: s.to_owned(),
        };
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

/// The address part of `10.0.0.7/24` (or of a bare address).
pub fn parse_addr(cidr: &str) -> Result<Ipv4Addr, IpamError> {
    let addr = cidr.split_once('/').map_or(cidr, |(addr, _)| addr);
    addr.trim().parse().map_err(|_| IpamError::BadAddress {
        given: cidr.to_owned(),
    })
}

/// The first `/mask` subnet of `pool` that overlaps none of `used`.
pub fn carve(pool: Subnet, mask: u8, used: &[Subnet]) -> Result<Subnet, IpamError> {
    if mask < pool.prefix || mask > 30 {
        return Err(IpamError::BadMask { pool, mask });
    }
    let step = 1u64 << (32 - u32::from(mask));
    let mut base = u64::from(pool.base);
    let end = u64::from(pool.last());
    while base <= end {
        let candidate = Subnet {
            base: u32::try_from(base).map_err(|_| IpamError::PoolExhausted { pool, mask })?,
            prefix: mask,
        };
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
    pub subnet: Subnet,
    range: Subnet,
    used: BTreeSet<Ipv4Addr>,
}

impl AddressPool {
    /// `gateway` is reserved; `range` (empty: the whole subnet) limits where addresses come from.
    pub fn new(subnet: Subnet, range: Option<Subnet>, gateway: Option<Ipv4Addr>) -> Self {
        Self {
            subnet,
            range: range.unwrap_or(subnet),
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
    pub fn release(&mut self, cidr: &str) {
        if let Ok(addr) = parse_addr(cidr) {
            self.used.remove(&addr);
        }
    }

    /// The lowest free address, now taken, as CIDR (`10.0.0.7/24`); `None` when exhausted.
    pub fn allocate(&mut self) -> Option<String> {
        let addr = self
            .range
            .hosts()
            .find(|a| self.subnet.contains(*a) && !self.used.contains(a))?;
        self.used.insert(addr);
        Some(self.subnet.cidr_of(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_subnets() {
        assert_eq!(subnet("10.0.1.9/24").to_string(), "10.0.1.0/24");
        assert!("10.0.1.0".parse::<Subnet>().is_err());
        assert!("10.0.1.0/33".parse::<Subnet>().is_err());
        assert_eq!(parse_addr("10.0.0.7/24"), Ok(Ipv4Addr::new(10, 0, 0, 7)));
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
        let got: Vec<_> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(
            got,
            ["10.0.0.2/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"]
        );
    }
}
