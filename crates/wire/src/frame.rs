//! Typed frames: one tag byte, a 4-byte big-endian length that counts itself,
//! then the body. The framer is pure: "incomplete" is `Ok(None)`, not an error.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// One protocol message, kept as the raw bytes that arrived (tag, length and
/// body), so it can be forwarded without re-encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    raw: Bytes,
}

impl Frame {
    /// Wraps bytes that already hold exactly one well-formed frame.
    ///
    /// Callers outside this crate build frames through [`crate::build`].
    pub(crate) fn from_raw(raw: Bytes) -> Frame {
        debug_assert!(raw.len() >= 5);
        Frame { raw }
    }

    /// The message type byte (`b'Q'`, `b'P'`, `b'Z'`, ...).
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The body after the tag and the length word.
    pub fn body(&self) -> &[u8] {
        &self.raw[5..]
    }

    /// The body as shared bytes (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.raw.slice(5..)
    }

    /// The whole frame as it travels on the wire.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the frame, returning its wire bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// Total length on the wire.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Frames always hold at least a tag and a length word.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Bodies may hold passwords or user data: show only the shape.
        write!(
            f,
            "Frame({:?}, {} bytes)",
            self.tag() as char,
            self.raw.len()
        )
    }
}

/// Why bytes cannot be a frame. Either error ends the connection that sent them.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length word is smaller than itself.
    #[error("invalid message length {length} for message type {tag:?}")]
    BadLength { tag: char, length: i64 },
    /// The length word exceeds the configured maximum.
    #[error("message of type {tag:?} is {length} bytes, over the limit of {max} bytes")]
    TooLarge { tag: char, length: u64, max: usize },
}

/// The tag and total size (tag byte included) of the typed frame at the
/// front of `buf`, once all of it is there (`Ok(None)` before). A length word
/// below 4 or above `max` is an error.
pub fn complete_frame(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, FrameError> {
    Ok(header(buf, max)?.filter(|&(_, total)| buf.len() >= total))
}

/// Splits one typed frame off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete (and reserves room for the
/// rest once its length is known and within `max`). A length word below 4 or
/// above `max` is an error before any allocation happens.
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    let Some((_, total)) = header(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    Ok(Some(Frame::from_raw(buf.split_to(total).freeze())))
}

/// The tag and total size of the frame whose header starts `buf`, if the
/// header is all there.
fn header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let length = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if length < 4 {
        return Err(FrameError::BadLength {
            tag: tag as char,
            length: length as i64,
        });
    }
    let total = length as usize + 1;
    if total > max {
        return Err(FrameError::TooLarge {
            tag: tag as char,
            length: length as u64,
            max,
        });
    }
    Ok(Some((tag, total)))
}

/// Reads the big-endian i32 at the start of `buf` without consuming it.
pub(crate) fn peek_i32(buf: &[u8]) -> Option<i32> {
    let mut b = buf.get(..4)?;
    Some(b.get_i32())
}
