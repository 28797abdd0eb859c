//! Asking a task's embedded resolver from the test, as a program in the task would.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};
use hive_dataplane::netns;

/// The port the embedded resolver listens on at 127.0.0.11 in the current thread's namespace
/// (its one UDP socket on that address, from `/proc/net/udp`). A task's own programs ask port
/// 53, which the data plane's cgroup hooks send there; the test's thread is not in the task's
/// cgroup, so it asks the port itself.
fn resolver_port() -> std::io::Result<u16> {
    let table = std::fs::read_to_string("/proc/thread-self/net/udp")?;
    // `local_address` is `ADDR:PORT` in hex, the address as the kernel's u32 in host order.
    let resolver = format!("{:08X}:", u32::from_ne_bytes([127, 0, 0, 11]));
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .find_map(|local| u16::from_str_radix(local.strip_prefix(&resolver)?, 16).ok())
        .ok_or_else(|| std::io::Error::other("no resolver socket on 127.0.0.11 in the namespace"))
}

/// Asks the embedded resolver of the task whose namespace is `ns` (on 127.0.0.11 there) for
/// the A records of `name`, over UDP or TCP: the answer's code and addresses.
pub fn resolve(ns: &Path, name: &str, tcp: bool) -> std::io::Result<(ResponseCode, Vec<Ipv4Addr>)> {
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(
        Name::from_ascii(name).map_err(std::io::Error::other)?,
        RecordType::A,
    ));
    let request = query.to_vec().map_err(std::io::Error::other)?;
    let bytes = netns::run_in(ns, || -> std::io::Result<Vec<u8>> {
        let resolver = SocketAddr::from(([127, 0, 0, 11], resolver_port()?));
        let timeout = Some(Duration::from_secs(2));
        if tcp {
            let mut stream = TcpStream::connect_timeout(&resolver, Duration::from_secs(2))?;
            stream.set_read_timeout(timeout)?;
            let len = u16::try_from(request.len()).map_err(std::io::Error::other)?;
            stream.write_all(&len.to_be_bytes())?;
            stream.write_all(&request)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut reply)?;
            Ok(reply)
        } else {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_read_timeout(timeout)?;
            socket.send_to(&request, resolver)?;
            let mut buf = [0u8; 1500];
            let len = socket.recv(&mut buf)?;
            Ok(buf[..len].to_vec())
        }
    })
    .expect("entering the task namespace")?;
    let reply = Message::from_vec(&bytes).map_err(std::io::Error::other)?;
    assert_eq!(
        reply.metadata.id, query.metadata.id,
        "the answer to our query"
    );
    let addrs = reply
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(addr)) => Some(addr),
            _ => None,
        })
        .collect();
    Ok((reply.metadata.response_code, addrs))
}
