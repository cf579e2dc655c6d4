//! Length-prefixed frames on a byte stream (TCP).
//!
//! A frame is a `u32` little-endian length followed by that many bytes. The
//! decoder follows the tokio-util codec contract: incomplete input is
//! `Ok(None)`, and a length over the limit is refused as soon as the four
//! length bytes are in, before any room is reserved for the body.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::FrameError;

/// Bytes in the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Default largest frame body, in bytes (64 KiB).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Splits a byte stream into frames, with a hard size limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The largest frame body accepted.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes one whole frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` while the frame is incomplete (and reserves room for
    /// the rest of it, which is within the limit), `Ok(Some(body))` once whole.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        if buf.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let mut len_bytes = [0u8; LENGTH_PREFIX];
        len_bytes.copy_from_slice(&buf[..LENGTH_PREFIX]);
        let len = u32::from_le_bytes(len_bytes);
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        if len_usize > self.max_frame {
            return Err(FrameError::TooLarge {
                len: u64::from(len),
                max: self.max_frame,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        let total = LENGTH_PREFIX + len_usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX);
        Ok(Some(buf.split_to(len_usize)))
    }
}

/// Appends `body` as one frame. Refuses an empty body or one over `max_frame`.
pub fn encode_frame(body: &[u8], max_frame: usize, out: &mut BytesMut) -> Result<(), FrameError> {
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    if body.len() > max_frame || u32::try_from(body.len()).is_err() {
        return Err(FrameError::TooLarge {
            len: body.len() as u64,
            max: max_frame,
        });
    }
    out.reserve(LENGTH_PREFIX + body.len());
    out.put_u32_le(body.len() as u32);
    out.put_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cut_is_incomplete_until_whole() {
        let mut wire = BytesMut::new();
        encode_frame(b"hello sustenet", DEFAULT_MAX_FRAME, &mut wire).unwrap();
        let d = FrameDecoder::new(DEFAULT_MAX_FRAME);
        for cut in 0..wire.len() {
            let mut partial = BytesMut::from(&wire[..cut]);
            assert_eq!(d.decode(&mut partial).unwrap(), None, "cut at {cut}");
        }
        let mut whole = wire.clone();
        assert_eq!(
            &d.decode(&mut whole).unwrap().unwrap()[..],
            b"hello sustenet"
        );
        assert!(whole.is_empty());
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let d = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let cap_before = buf.capacity();
        assert_eq!(
            d.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: 1024
            })
        );
        assert_eq!(buf.capacity(), cap_before);
    }

    #[test]
    fn empty_frame_is_refused() {
        let d = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(d.decode(&mut buf), Err(FrameError::Empty));
    }
}
