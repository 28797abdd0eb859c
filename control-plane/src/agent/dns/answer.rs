//! One DNS query in, one decision out: answer it from [`Names`], hand it to the node's own
//! resolvers, or say why not. Bytes in and out, so the server around it stays a loop over a
//! socket and this is tested on its own.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};

use super::names::{Lookup, Names};

/// Docker's embedded resolver gives its records a TTL of 600 s.
pub const TTL: u32 = 600;

/// The most a UDP answer may hold without EDNS (RFC 1035 §4.2.1).
const UDP_PLAIN: usize = 512;

/// The most a UDP answer may hold with EDNS, whatever the client offers: the size DNS flag day
/// 2020 chose to stay clear of IP fragmentation.
const UDP_EDNS: usize = 1232;

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not a swarm name: ask the node's resolvers and relay what they say.
    Forward,
    /// Not a DNS query at all (too short to carry an ID to answer): nothing to send.
    Ignore,
}

/// How the query came: over UDP an answer must fit a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Answers `request` for a task attached to `networks`.
pub fn answer<'a>(
    request: &[u8],
    names: &Names,
    networks: impl IntoIterator<Item = &'a str>,
    transport: Transport,
) -> Reply {
    let query = match Message::from_vec(request) {
        Ok(query) => query,
        Err(_) => return malformed(request),
    };
    if query.metadata.message_type != MessageType::Query {
        return Reply::Ignore;
    }
    if query.metadata.op_code != OpCode::Query {
        return error(&query, ResponseCode::NotImp);
    }
    let [question] = query.queries.as_slice() else {
        return error(&query, ResponseCode::FormErr);
    };
    if question.query_class() != DNSClass::IN {
        return Reply::Forward;
    }
    let name = question.name().to_string();
    let addrs = match names.lookup(networks, &name) {
        Lookup::Found(addrs) => addrs,
        Lookup::NotInSwarm => return Reply::Forward,
    };
    let mut response = response(&query, ResponseCode::NoError);
    response.metadata.authoritative = true;
    if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
        response.add_answers(records(question, &addrs, query.metadata.id));
    }
    // Any other type of a swarm name (AAAA above all): the name exists, with no such record.
    encode(&response, limit(&query, transport))
}

/// Builds the reply the node's resolvers could not give (none answered in time).
pub fn server_failure(request: &[u8]) -> Reply {
    match Message::from_vec(request) {
        Ok(query) => error(&query, ResponseCode::ServFail),
        Err(_) => malformed(request),
    }
}

/// The A records of `addrs`, rotated by the query's ID: clients that take the first address
/// (most do) spread over the tasks of a `tasks.` name or a dnsrr service, as Docker's
/// resolver shuffles them.
fn records(question: &Query, addrs: &[Ipv4Addr], id: u16) -> Vec<Record> {
    if addrs.is_empty() {
        return Vec::new();
    }
    let start = usize::from(id) % addrs.len();
    addrs[start..]
        .iter()
        .chain(&addrs[..start])
        .map(|addr| Record::from_rdata(question.name().clone(), TTL, RData::A(A(*addr))))
        .collect()
}

/// A response to `query`: its ID, question and recursion flag.
fn response(query: &Message, code: ResponseCode) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.response_code = code;
    response.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_EDNS as u16);
        response.set_edns(edns);
    }
    response
}

fn error(query: &Message, code: ResponseCode) -> Reply {
    encode(&response(query, code), UDP_PLAIN)
}

/// The largest answer the client takes.
fn limit(query: &Message, transport: Transport) -> usize {
    match (transport, &query.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(edns)) => usize::from(edns.max_payload()).clamp(UDP_PLAIN, UDP_EDNS),
        (Transport::Udp, None) => UDP_PLAIN,
    }
}

/// Encodes `response`; one that does not fit `limit` goes with no records and the TC flag,
/// so the client asks again over TCP.
fn encode(response: &Message, limit: usize) -> Reply {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Reply::Answer(bytes),
        Ok(_) => match response.truncate().to_vec() {
            Ok(bytes) => Reply::Answer(bytes),
            Err(_) => Reply::Ignore,
        },
        Err(_) => Reply::Ignore,
    }
}

/// A query that does not parse: FORMERR with its ID, if it has a header at all.
fn malformed(request: &[u8]) -> Reply {
    let [hi, lo, ..] = request else {
        return Reply::Ignore;
    };
    if request.len() < 12 {
        return Reply::Ignore;
    }
    // QR set: a response. Never answer one (two resolvers would bounce it forever).
    if request[2] & 0x80 != 0 {
        return Reply::Ignore;
    }
    let id = u16::from_be_bytes([*hi, *lo]);
    match Message::error_msg(id, OpCode::Query, ResponseCode::FormErr).to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => Reply::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::api::mesh_view::{MeshAttachment, MeshNetwork, MeshService, MeshTask, MeshView};
    use crate::store::objects::{Endpoint, VirtualIp};

    /// `db` with VIP 10.0.1.2 and `count` tasks on network `back`.
    fn names(count: u8) -> Names {
        let view = MeshView {
            networks: vec![MeshNetwork {
                id: "back".into(),
                subnet: "10.0.0.0/16".parse().unwrap(),
                ..MeshNetwork::default()
            }],
            services: vec![MeshService {
                id: "s1".into(),
                name: "db".into(),
                endpoint: Endpoint {
                    virtual_ips: vec![VirtualIp {
                        network_id: "back".into(),
                        addr: "10.0.1.2/16".parse().unwrap(),
                    }],
                    ..Endpoint::default()
                },
            }],
            tasks: (0..count)
                .map(|i| MeshTask {
                    id: format!("t{i}"),
                    service_id: "s1".into(),
                    node_id: "n1".into(),
                    networks: vec![MeshAttachment {
                        network_id: "back".into(),
                        addresses: vec![format!("10.0.2.{i}/16").parse().unwrap()],
                        aliases: Vec::new(),
                    }],
                    draining: false,
                })
                .collect(),
            ..MeshView::default()
        };
        Names::from_view(&view, &BTreeSet::new())
    }

    fn query(name: &str, kind: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).expect("name"), kind));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            message.set_edns(e);
        }
        message.to_vec().expect("encodes")
    }

    fn decode(reply: Reply) -> Message {
        match reply {
            Reply::Answer(bytes) => Message::from_vec(&bytes).expect("a DNS message"),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn a_records(message: &Message) -> Vec<Ipv4Addr> {
        message
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(addr)) => Some(addr),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_service_name_is_answered_with_its_vip_authoritatively() {
        let reply = decode(answer(
            &query("db.", RecordType::A, None),
            &names(2),
            ["back"],
            Transport::Udp,
        ));
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative && reply.metadata.recursion_desired);
        assert_eq!(a_records(&reply), [Ipv4Addr::new(10, 0, 1, 2)]);
        assert_eq!(reply.answers[0].ttl, TTL);
        assert_eq!(reply.queries.len(), 1, "the question is echoed");
    }

    #[test]
    fn tasks_names_list_every_task_rotated_by_the_query_id() {
        let reply = decode(answer(
            &query("tasks.db.", RecordType::A, None),
            &names(3),
            ["back"],
            Transport::Udp,
        ));
        let mut got = a_records(&reply);
        // 0x1234 % 3 == 1: the list starts at the second task.
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 2, 1));
        got.sort();
        assert_eq!(
            got,
            [0, 1, 2].map(|i| Ipv4Addr::new(10, 0, 2, i)),
            "every task"
        );
    }

    #[test]
    fn aaaa_of_a_swarm_name_is_nodata_not_nxdomain() {
        let reply = decode(answer(
            &query("db.", RecordType::AAAA, None),
            &names(1),
            ["back"],
            Transport::Udp,
        ));
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
    }

    #[test]
    fn other_names_go_to_the_nodes_resolvers() {
        let reply = answer(
            &query("example.com.", RecordType::A, None),
            &names(1),
            ["back"],
            Transport::Udp,
        );
        assert_eq!(reply, Reply::Forward);
        // A task of another network does not see db either.
        let reply = answer(
            &query("db.", RecordType::A, None),
            &names(1),
            ["front"],
            Transport::Udp,
        );
        assert_eq!(reply, Reply::Forward);
    }

    #[test]
    fn an_answer_too_big_for_udp_is_truncated_and_whole_over_tcp() {
        let request = query("tasks.db.", RecordType::A, None);
        let udp = decode(answer(&request, &names(60), ["back"], Transport::Udp));
        assert!(udp.metadata.truncation, "60 records do not fit 512 bytes");
        assert!(udp.answers.is_empty());
        let tcp = decode(answer(&request, &names(60), ["back"], Transport::Tcp));
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 60);
        // EDNS makes room for them over UDP too.
        let edns = query("tasks.db.", RecordType::A, Some(4096));
        let udp = decode(answer(&edns, &names(60), ["back"], Transport::Udp));
        assert!(!udp.metadata.truncation);
        assert_eq!(udp.answers.len(), 60);
        assert!(udp.edns.is_some(), "EDNS in, EDNS out");
    }

    #[test]
    fn malformed_queries_get_formerr_and_noise_gets_nothing() {
        let mut request = query("db.", RecordType::A, None);
        request.truncate(14); // header and a cut name
        let reply = decode(answer(&request, &names(1), ["back"], Transport::Udp));
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(
            answer(b"hi", &names(1), ["back"], Transport::Udp),
            Reply::Ignore
        );
        // A response is never answered.
        let mut response = query("db.", RecordType::A, None);
        response[2] |= 0x80;
        response.truncate(14);
        assert_eq!(
            answer(&response, &names(1), ["back"], Transport::Udp),
            Reply::Ignore
        );
    }

    #[test]
    fn other_opcodes_are_not_implemented() {
        let mut message = Message::new(7, MessageType::Query, OpCode::Status);
        message.add_query(Query::query(
            Name::from_ascii("db.").expect("name"),
            RecordType::A,
        ));
        let request = message.to_vec().expect("encodes");
        let reply = decode(answer(&request, &names(1), ["back"], Transport::Udp));
        assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn a_failed_forward_is_answered_with_servfail() {
        let reply = decode(server_failure(&query("example.com.", RecordType::A, None)));
        assert_eq!(reply.metadata.id, 0x1234);
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
}
