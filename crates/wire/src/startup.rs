//! The first packet on a connection has no type byte: a length word, then a
//! request code. <https://www.postgresql.org/docs/current/protocol-message-formats.html>

use bytes::{Buf, BytesMut};

use crate::frame::{peek_i32, FrameError};
use crate::reader::Reader;

/// Protocol version 3.0, as sent in StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// Request code of SSLRequest.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// Request code of GSSENCRequest.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// Request code of CancelRequest.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Postgres's own bound on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

/// The untyped first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// StartupMessage: protocol version and `name=value` parameters in order.
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
    /// SSLRequest: the client asks for TLS.
    SslRequest,
    /// GSSENCRequest: the client asks for GSSAPI encryption.
    GssEncRequest,
    /// CancelRequest: cancel the query running on the connection with this key.
    Cancel { pid: i32, secret: i32 },
}

impl StartupPacket {
    /// The value of a startup parameter, if the client sent it.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Splits one startup packet off the front of `buf`. `Ok(None)` means more
/// bytes are needed. Lengths outside 8..=[`MAX_STARTUP_PACKET`], unknown
/// request codes and malformed parameter lists are errors.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<StartupPacket>, StartupError> {
    let Some(length) = peek_i32(buf) else {
        return Ok(None);
    };
    if length < 8 {
        return Err(StartupError::Frame(FrameError::BadLength {
            tag: '\0',
            length: length as i64,
        }));
    }
    let length = length as usize;
    if length > MAX_STARTUP_PACKET {
        return Err(StartupError::Frame(FrameError::TooLarge {
            tag: '\0',
            length: length as u64,
            max: MAX_STARTUP_PACKET,
        }));
    }
    if buf.len() < length {
        buf.reserve(length - buf.len());
        return Ok(None);
    }
    let mut packet = buf.split_to(length);
    packet.advance(4);
    let code = packet.get_i32();
    let body = &packet[..];
    let parsed = match code {
        SSL_REQUEST_CODE if body.is_empty() => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE if body.is_empty() => StartupPacket::GssEncRequest,
        // Protocol 3.0 keys are exactly two words (3.2's longer keys are
        // not negotiated by this proxy).
        CANCEL_REQUEST_CODE if body.len() == 8 => {
            let mut r = Reader::new(body);
            let (Some(pid), Some(secret)) = (r.i32(), r.i32()) else {
                return Err(StartupError::Malformed("CancelRequest length"));
            };
            StartupPacket::Cancel { pid, secret }
        }
        CANCEL_REQUEST_CODE => return Err(StartupError::Malformed("CancelRequest length")),
        c if (c >> 16) == 3 => StartupPacket::Startup {
            major: 3,
            minor: (c & 0xffff) as u16,
            params: decode_params(body)?,
        },
        c => return Err(StartupError::UnsupportedProtocol(c)),
    };
    Ok(Some(parsed))
}

fn decode_params(body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut r = Reader::new(body);
    let mut params = Vec::new();
    loop {
        let name = r
            .str()
            .ok_or(StartupError::Malformed("startup parameter name"))?;
        if name.is_empty() {
            break;
        }
        let value = r
            .str()
            .ok_or(StartupError::Malformed("startup parameter value"))?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if !r.rest().is_empty() {
        return Err(StartupError::Malformed("bytes after startup parameters"));
    }
    Ok(params)
}

/// Why a startup packet was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    /// Bad or oversized length word.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A request code no Postgres server knows.
    #[error("unsupported frontend protocol {}.{}", .0 >> 16, .0 & 0xffff)]
    UnsupportedProtocol(i32),
    /// The body does not match its request code.
    #[error("malformed startup packet: {0}")]
    Malformed(&'static str),
}
