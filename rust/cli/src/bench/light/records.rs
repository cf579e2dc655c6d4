//! The records of an opened datagram (protocol §10.3), read where they lie:
//! no allocation and no event per record.

/// A record, borrowed from the plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordRef<'a> {
    /// `Data`: a command and its payload.
    Data {
        command: u16,
        payload: &'a [u8],
    },
    /// `Ping` or `Pong` and its value.
    Ping(u64),
    Pong(u64),
    /// `PathChallenge` (from the cluster) and `PathResponse`, and their value.
    PathChallenge(u64),
    PathResponse(u64),
}

/// The records of `plain`, in order; `Err` at the first malformed one (an
/// unknown type or a truncated record make the whole datagram malformed).
pub(crate) fn for_each_record<'a>(
    plain: &'a [u8],
    mut f: impl FnMut(RecordRef<'a>),
) -> Result<(), ()> {
    let mut rest = plain;
    while let Some((&kind, body)) = rest.split_first() {
        let (record, next) = match kind {
            0x01 => {
                let head = body.get(..4).ok_or(())?;
                let command = u16::from_le_bytes([head[0], head[1]]);
                let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
                let payload = body.get(4..4 + len).ok_or(())?;
                (RecordRef::Data { command, payload }, &body[4 + len..])
            }
            0x02..=0x05 => {
                let v: [u8; 8] = body.get(..8).ok_or(())?.try_into().map_err(|_| ())?;
                let v = u64::from_le_bytes(v);
                let r = match kind {
                    0x02 => RecordRef::Ping(v),
                    0x03 => RecordRef::Pong(v),
                    0x04 => RecordRef::PathChallenge(v),
                    _ => RecordRef::PathResponse(v),
                };
                (r, &body[8..])
            }
            _ => return Err(()),
        };
        f(record);
        rest = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use sustenet_proto::datagram::{Batch, Record, decode_records};

    #[test]
    fn reads_what_the_protocol_crate_writes() {
        let mut b = Batch::new();
        let records = [
            Record::Data {
                command: 11,
                payload: vec![7; 36],
            },
            Record::Ping(5),
            Record::Data {
                command: 1,
                payload: Vec::new(),
            },
            Record::Pong(u64::MAX),
            Record::PathChallenge(9),
            Record::PathResponse(10),
        ];
        for r in &records {
            assert_eq!(b.push(r), Ok(true));
        }
        let plain = b.take();
        let mut seen = Vec::new();
        for_each_record(&plain, |r| {
            seen.push(match r {
                RecordRef::Data { command, payload } => Record::Data {
                    command,
                    payload: payload.to_vec(),
                },
                RecordRef::Ping(v) => Record::Ping(v),
                RecordRef::Pong(v) => Record::Pong(v),
                RecordRef::PathChallenge(v) => Record::PathChallenge(v),
                RecordRef::PathResponse(v) => Record::PathResponse(v),
            })
        })
        .unwrap();
        assert_eq!(seen, decode_records(&plain).unwrap());
        // Truncated or unknown: malformed, as for the protocol crate.
        for bad in [
            &plain[..plain.len() - 1],
            &[0x09u8][..],
            &[0x01, 11, 0, 5, 0, 1][..],
        ] {
            assert!(for_each_record(bad, |_| {}).is_err());
            assert!(decode_records(bad).is_err());
        }
        assert!(for_each_record(&[], |_| panic!("no record")).is_ok());
    }
}
