//! Proves that the frame decoder gives back exactly the frames that were sent, in order, however the stream is chunked, and that it refuses empty frames and oversized length prefixes (up to 4 GiB) without reserving memory for them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use sustenet_proto::frame::LENGTH_PREFIX;
use sustenet_proto::{DEFAULT_MAX_FRAME, FrameDecoder, FrameError, encode_frame};

/// Feeds `wire` to the decoder in chunks of the given sizes (cycled), the
/// way a socket hands over reads, and collects every frame it yields.
fn feed(d: &FrameDecoder, wire: &[u8], chunks: &[usize]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < wire.len() {
        let n = chunks[i % chunks.len()].min(wire.len() - at);
        i += 1;
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f.to_vec());
        }
    }
    assert!(buf.is_empty(), "bytes left over after the last frame");
    Ok(out)
}

fn frame_body(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 1..=max.min(64)),
        2 => vec(any::<u8>(), 1..=max),
        1 => vec(any::<u8>(), max..=max),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn chunked_stream_yields_every_frame_in_order(
        (max, frames) in prop_oneof![Just(DEFAULT_MAX_FRAME), 1usize..2048]
            .prop_flat_map(|max| (Just(max), vec(frame_body(max.min(4096)), 1..40))),
        chunks in vec(1usize..300, 1..16),
    ) {
        let d = FrameDecoder::new(max);
        let mut wire = BytesMut::new();
        for f in &frames {
            encode_frame(f, max, &mut wire).unwrap();
        }
        prop_assert_eq!(feed(&d, &wire, &chunks).unwrap(), frames);
    }

    #[test]
    fn byte_at_a_time_yields_every_frame(frames in vec(vec(any::<u8>(), 1..100), 1..20)) {
        let d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut wire = BytesMut::new();
        for f in &frames {
            encode_frame(f, DEFAULT_MAX_FRAME, &mut wire).unwrap();
        }
        prop_assert_eq!(feed(&d, &wire, &[1]).unwrap(), frames);
    }

    /// A frame cut anywhere is incomplete, never an error nor a shorter frame.
    #[test]
    fn cut_frame_is_incomplete_until_whole(body in vec(any::<u8>(), 1..600), next in vec(any::<u8>(), 1..8)) {
        let d = FrameDecoder::new(1024);
        let mut wire = BytesMut::new();
        encode_frame(&body, 1024, &mut wire).unwrap();
        for cut in 0..wire.len() {
            let mut partial = BytesMut::from(&wire[..cut]);
            prop_assert_eq!(d.decode(&mut partial), Ok(None), "cut {}", cut);
            // Incomplete input is left in place for the next read.
            prop_assert_eq!(&partial[..], &wire[..cut]);
        }
        // Whole, with the start of the next frame behind it: exactly one frame comes off.
        let whole_len = wire.len();
        encode_frame(&next, 1024, &mut wire).unwrap();
        let mut buf = wire.clone();
        let got = d.decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(&got[..], &body[..]);
        prop_assert_eq!(&buf[..], &wire[whole_len..]);
    }

    /// A prefix over the limit is refused as soon as its four bytes are in,
    /// whatever follows, and the buffer's capacity does not grow.
    #[test]
    fn oversized_prefix_is_refused_without_reserving(
        max in 1usize..100_000,
        over in 1u64..=u64::from(u32::MAX),
        tail in vec(any::<u8>(), 0..32),
    ) {
        let len = (max as u64).saturating_add(over).min(u64::from(u32::MAX));
        prop_assume!(len > max as u64);
        let d = FrameDecoder::new(max);
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&tail);
        let cap = buf.capacity();
        prop_assert_eq!(d.decode(&mut buf), Err(FrameError::TooLarge { len, max }));
        prop_assert_eq!(buf.capacity(), cap);
        prop_assert_eq!(buf.len(), LENGTH_PREFIX + tail.len());
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..2048), max in 1usize..4096) {
        let d = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&bytes[..]);
        let start_cap = buf.capacity();
        let mut taken = 0;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => {
                    prop_assert!(!f.is_empty() && f.len() <= max);
                    taken += LENGTH_PREFIX + f.len();
                }
                Ok(None) => {
                    // Room is reserved for at most one frame within the limit.
                    prop_assert!(buf.capacity() <= 2 * start_cap.max(LENGTH_PREFIX + max));
                    break;
                }
                Err(_) => break,
            }
        }
        prop_assert_eq!(taken + buf.len(), bytes.len());
    }
}

#[test]
fn four_gib_prefix_is_refused_without_reserving() {
    for max in [1, 1024, DEFAULT_MAX_FRAME, 16 * 1024 * 1024] {
        let d = FrameDecoder::new(max);
        let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF][..]);
        let cap = buf.capacity();
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: 0xFFFF_FFFF,
                max
            })
        );
        assert_eq!(buf.capacity(), cap);
        assert_eq!(buf.len(), 4);
    }
}

#[test]
fn limit_is_inclusive() {
    let d = FrameDecoder::new(100);
    let mut buf = BytesMut::new();
    encode_frame(&[7; 100], 100, &mut buf).unwrap();
    assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], &[7; 100][..]);
    let mut over = BytesMut::from(&101u32.to_le_bytes()[..]);
    assert_eq!(
        d.decode(&mut over),
        Err(FrameError::TooLarge { len: 101, max: 100 })
    );
    let mut out = BytesMut::new();
    assert_eq!(
        encode_frame(&[7; 101], 100, &mut out),
        Err(FrameError::TooLarge { len: 101, max: 100 })
    );
    assert!(out.is_empty());
}

#[test]
fn zero_length_is_refused() {
    let d = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert_eq!(d.decode(&mut buf), Err(FrameError::Empty));
    // Even between good frames.
    let mut wire = BytesMut::new();
    encode_frame(b"ok", DEFAULT_MAX_FRAME, &mut wire).unwrap();
    wire.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(&d.decode(&mut wire).unwrap().unwrap()[..], b"ok");
    assert_eq!(d.decode(&mut wire), Err(FrameError::Empty));
    let mut out = BytesMut::new();
    assert_eq!(
        encode_frame(&[], DEFAULT_MAX_FRAME, &mut out),
        Err(FrameError::Empty)
    );
    assert!(out.is_empty());
}

/// A peer that announces a big (allowed) frame and sends it slowly gets room
/// reserved once, for that frame only.
#[test]
fn incomplete_frame_reserves_at_most_its_own_size() {
    let max = 64 * 1024;
    let d = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(max as u32).to_le_bytes());
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert!(buf.capacity() >= LENGTH_PREFIX + max);
    assert!(buf.capacity() < 2 * (LENGTH_PREFIX + max));
}
