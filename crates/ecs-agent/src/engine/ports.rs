//! Host ports for dynamic port mappings. The agent, not Docker, chooses
//! them (docs/engine.md §8): from `ECS_DYNAMIC_HOST_PORT_RANGE` (or the
//! kernel's ephemeral range), testing each by binding it, continuing from
//! the last port handed out so consecutive tasks do not collide, and never
//! handing out a reserved port.

use std::net::{TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use super::task::{Container, Protocol};

/// A host port chosen for one container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedPort {
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
}

/// A `containerPortRange` and the first host port of its contiguous block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignedRange {
    pub container_start: u16,
    pub container_end: u16,
    pub host_start: u16,
    pub protocol: Protocol,
}

impl AssignedRange {
    pub fn contains(&self, port: u16, protocol: Protocol) -> bool {
        protocol == self.protocol && (self.container_start..=self.container_end).contains(&port)
    }

    pub fn host_port(&self, container_port: u16) -> u16 {
        self.host_start + (container_port - self.container_start)
    }
}

/// Why no host port could be chosen; the container's create fails with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("a host port is unavailable")]
    Unavailable,
    #[error("{0} contiguous host ports are unavailable")]
    NoContiguousRange(u32),
    #[error("invalid containerPortRange {0:?}")]
    BadRange(String),
}

/// `"a-b"` → (a, b).
pub fn parse_range(text: &str) -> Result<(u16, u16), PortError> {
    let bad = || PortError::BadRange(text.to_string());
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Whether a port is free, as far as the agent can tell by binding it.
pub trait PortProbe {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool;
}

/// Binds the port on all interfaces, as Docker will.
pub struct BindProbe;

impl PortProbe for BindProbe {
    fn is_free(&self, port: u16, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Tcp => TcpListener::bind(("0.0.0.0", port)).is_ok(),
            Protocol::Udp => UdpSocket::bind(("0.0.0.0", port)).is_ok(),
        }
    }
}

/// The process-wide cursor over the dynamic range.
pub struct PortAllocator<P: PortProbe = BindProbe> {
    start: u16,
    end: u16,
    reserved_tcp: Vec<u16>,
    reserved_udp: Vec<u16>,
    last: Option<u16>,
    probe: P,
}

impl PortAllocator<BindProbe> {
    pub fn new(range: (u16, u16), reserved_tcp: Vec<u16>, reserved_udp: Vec<u16>) -> Self {
        Self::with_probe(range, reserved_tcp, reserved_udp, BindProbe)
    }
}

impl<P: PortProbe> PortAllocator<P> {
    pub fn with_probe(
        range: (u16, u16),
        reserved_tcp: Vec<u16>,
        reserved_udp: Vec<u16>,
        probe: P,
    ) -> Self {
        Self {
            start: range.0,
            end: range.1,
            reserved_tcp,
            reserved_udp,
            last: None,
            probe,
        }
    }

    fn usable(&self, port: u16, protocol: Protocol) -> bool {
        let reserved = match protocol {
            Protocol::Tcp => &self.reserved_tcp,
            Protocol::Udp => &self.reserved_udp,
        };
        !reserved.contains(&port) && self.probe.is_free(port, protocol)
    }

    /// Finds `count` contiguous free ports, scanning from just after the
    /// last one handed out to the end of the range, then from its start.
    /// Returns the first port of the block.
    pub fn pick(&mut self, protocol: Protocol, count: u32) -> Result<u16, PortError> {
        let begin = match self.last {
            Some(last) if last < self.end => last + 1,
            _ => self.start,
        };
        let found = self.scan(begin, self.end, protocol, count).or_else(|| {
            self.scan(
                self.start,
                begin.saturating_sub(1).max(self.start),
                protocol,
                count,
            )
        });
        match found {
            Some(first) => {
                self.last = Some(first + u16::try_from(count - 1).unwrap_or(0));
                Ok(first)
            }
            None if count == 1 => Err(PortError::Unavailable),
            None => Err(PortError::NoContiguousRange(count)),
        }
    }

    fn scan(&self, from: u16, to: u16, protocol: Protocol, count: u32) -> Option<u16> {
        let mut port = u32::from(from);
        let to = u32::from(to);
        while port + count - 1 <= to {
            let busy = (port..port + count)
                .find(|p| !self.usable(u16::try_from(*p).unwrap_or(u16::MAX), protocol));
            match busy {
                None => return u16::try_from(port).ok(),
                Some(b) => port = b + 1,
            }
        }
        None
    }

    /// Chooses host ports for every dynamic mapping and range of a
    /// container, once: a container that already has them keeps them.
    pub fn assign(&mut self, container: &mut Container) -> Result<(), PortError> {
        if !container.assigned_ports.is_empty() || !container.assigned_ranges.is_empty() {
            return Ok(());
        }
        let mut ports = Vec::new();
        let mut ranges = Vec::new();
        for mapping in &container.spec.port_mappings {
            if let Some(text) = &mapping.container_port_range {
                let (a, b) = parse_range(text)?;
                let first = self.pick(mapping.protocol, u32::from(b - a) + 1)?;
                ranges.push(AssignedRange {
                    container_start: a,
                    container_end: b,
                    host_start: first,
                    protocol: mapping.protocol,
                });
            } else if mapping.host_port == 0 {
                let host_port = self.pick(mapping.protocol, 1)?;
                ports.push(AssignedPort {
                    container_port: mapping.container_port,
                    host_port,
                    protocol: mapping.protocol,
                });
            }
        }
        container.assigned_ports = ports;
        container.assigned_ranges = ranges;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    /// Ports listed here are taken.
    struct Busy(HashSet<u16>);

    impl PortProbe for Busy {
        fn is_free(&self, port: u16, _: Protocol) -> bool {
            !self.0.contains(&port)
        }
    }

    fn allocator(busy: &[u16]) -> PortAllocator<Busy> {
        PortAllocator::with_probe(
            (100, 110),
            vec![105],
            vec![],
            Busy(busy.iter().copied().collect()),
        )
    }

    #[test]
    fn continues_after_the_last_port_and_wraps() {
        let mut a = allocator(&[101]);
        assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), 100);
        assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), 102, "101 is busy");
        assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), 103);
        assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), 104);
        assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), 106, "105 is reserved");
        for expected in 107..=110 {
            assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), expected);
        }
        assert_eq!(a.pick(Protocol::Tcp, 1).unwrap(), 100, "wraps to the start");
    }

    #[test]
    fn contiguous_blocks_skip_busy_ports() {
        let mut a = allocator(&[102]);
        // 102 is busy and 105 is reserved for TCP.
        assert_eq!(a.pick(Protocol::Tcp, 3).unwrap(), 106);
        assert_eq!(
            a.pick(Protocol::Tcp, 5).unwrap_err(),
            PortError::NoContiguousRange(5)
        );
        // UDP has no reserved ports here.
        assert_eq!(a.pick(Protocol::Udp, 3).unwrap(), 103);
    }

    #[test]
    fn exhausted_range_is_an_error() {
        let mut a = allocator(&(100..=110).collect::<Vec<_>>());
        assert_eq!(
            a.pick(Protocol::Tcp, 1).unwrap_err(),
            PortError::Unavailable
        );
    }

    #[test]
    fn real_probe_sees_a_bound_port() {
        let listener = TcpListener::bind(("0.0.0.0", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!BindProbe.is_free(port, Protocol::Tcp));
        drop(listener);
        assert!(BindProbe.is_free(port, Protocol::Tcp));
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("8000-8003").unwrap(), (8000, 8003));
        assert!(parse_range("9-1").is_err());
        assert!(parse_range("x").is_err());
    }
}
