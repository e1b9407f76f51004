//! PostgreSQL frontend/backend protocol, as much of it as a proxy must see.
//!
//! Frames are forwarded as raw [`bytes::Bytes`]; only the messages the proxy
//! inspects are decoded, and only the fields it needs. Nothing here does I/O:
//! every decoder is a pure function over a buffer, so it can be fuzzed and
//! property-tested.
//!
//! - [`frame`]: typed frames (`tag` + length + body) and the framer that
//!   enforces the maximum message size before allocating.
//! - [`startup`]: the untyped first packet (StartupMessage, SSLRequest,
//!   GSSENCRequest, CancelRequest).
//! - [`reader`]: a bounds-checked cursor over a message body.
//! - [`inspect`]: zero-copy views of the frontend messages the proxy rewrites
//!   (Parse, Bind, Describe, Close) and of ErrorResponse fields.
//! - [`build`]: constructors for every message the proxy sends itself.
//! - [`sqlstate`]: the SQLSTATE codes the proxy reports.
//!
//! Protocol reference: <https://www.postgresql.org/docs/current/protocol-message-formats.html>

pub mod build;
pub mod frame;
pub mod inspect;
pub mod reader;
pub mod sqlstate;
pub mod startup;

pub use frame::{complete_frame, decode_frame, Frame, FrameError};
pub use sqlstate::SqlState;
pub use startup::{decode_startup, StartupPacket};
