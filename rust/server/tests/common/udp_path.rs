//! A raw player's UDP path as the address proof (protocol §10.4) sees it:
//! tests that seal and open datagrams by hand prove their sockets with
//! [`prove`], and seal records with [`sealed`].

use sustenet_proto::crypto::DatagramSealer;
use sustenet_proto::datagram::{Batch, Record};

/// `records` as one datagram sealed by `sealer` (they must fit in one).
pub fn sealed(sealer: &mut DatagramSealer, records: &[Record]) -> Vec<u8> {
    let mut b = Batch::new();
    for r in records {
        assert!(b.push(r).unwrap(), "the records fit in one datagram");
    }
    sealer.seal(b.as_bytes()).unwrap()
}

/// A socket of a raw player's session: sends sealed records, reads the
/// records of the datagrams that come.
pub trait UdpPath {
    /// Seals `records` into one datagram and sends it.
    fn send_records(&mut self, records: &[Record]) -> impl Future<Output = ()>;
    /// The records of the next datagram from the cluster.
    fn recv_records(&mut self) -> impl Future<Output = Vec<Record>>;
}

/// Proves the path's address: a Ping, the challenge that comes back, its
/// echo; returns once a Pong shows the cluster answers it as proven.
pub async fn prove(path: &mut impl UdpPath) {
    path.send_records(&[Record::Ping(1)]).await;
    let challenge = loop {
        let rs = path.recv_records().await;
        if let Some(v) = rs.iter().find_map(|r| match r {
            Record::PathChallenge(v) => Some(*v),
            _ => None,
        }) {
            break v;
        }
    };
    path.send_records(&[Record::PathResponse(challenge), Record::Ping(2)])
        .await;
    while !path.recv_records().await.contains(&Record::Pong(2)) {}
}
