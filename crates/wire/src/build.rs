//! Constructors for the messages the proxy sends itself, to clients (backend
//! messages) and to servers (frontend messages).

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::Frame;
use crate::inspect::TxStatus;
use crate::sqlstate::SqlState;
use crate::startup::{CANCEL_REQUEST_CODE, PROTOCOL_3_0};

/// Builds one typed message: `tag`, then a length patched in after `body` wrote.
fn message(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Frame {
    let mut buf = BytesMut::with_capacity(64);
    append(&mut buf, tag, body);
    Frame::from_raw(buf.freeze())
}

/// Appends one typed message to `buf`: `tag`, then a length patched in
/// after `body` wrote.
pub fn append(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(tag);
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - start - 1) as i32;
    buf[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Severity of an error the proxy reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// ErrorResponse ('E') with severity, SQLSTATE and message.
pub fn error_response(severity: Severity, code: SqlState, message_text: &str) -> Frame {
    error_response_code(severity, code.code(), message_text)
}

/// ErrorResponse ('E') carrying a SQLSTATE the server reported.
pub fn error_response_code(severity: Severity, code: &str, message_text: &str) -> Frame {
    message(b'E', |b| {
        b.put_u8(b'S');
        put_cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'V');
        put_cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'C');
        put_cstr(b, code.as_bytes());
        b.put_u8(b'M');
        put_cstr(b, message_text.as_bytes());
        b.put_u8(0);
    })
}

/// A message with the given tag and body as is (an ErrorResponse the proxy
/// passes on later, for instance).
pub fn raw_message(tag: u8, body: &[u8]) -> Frame {
    message(tag, |b| b.put_slice(body))
}

/// NoticeResponse ('N') at WARNING severity.
pub fn notice_warning(message_text: &str) -> Frame {
    message(b'N', |b| {
        for k in [b'S', b'V'] {
            b.put_u8(k);
            put_cstr(b, b"WARNING");
        }
        b.put_u8(b'C');
        put_cstr(b, b"01000");
        b.put_u8(b'M');
        put_cstr(b, message_text.as_bytes());
        b.put_u8(0);
    })
}

/// AuthenticationOk.
pub fn auth_ok() -> Frame {
    message(b'R', |b| b.put_i32(0))
}

/// AuthenticationMD5Password with its salt.
pub fn auth_md5(salt: [u8; 4]) -> Frame {
    message(b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    })
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext() -> Frame {
    message(b'R', |b| b.put_i32(3))
}

/// AuthenticationSASL offering the given mechanisms.
pub fn auth_sasl(mechanisms: &[&str]) -> Frame {
    message(b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    })
}

/// AuthenticationSASLContinue.
pub fn auth_sasl_continue(data: &[u8]) -> Frame {
    message(b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    })
}

/// AuthenticationSASLFinal.
pub fn auth_sasl_final(data: &[u8]) -> Frame {
    message(b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    })
}

/// ParameterStatus ('S').
pub fn parameter_status(name: &str, value: &str) -> Frame {
    message(b'S', |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    })
}

/// BackendKeyData ('K').
pub fn backend_key_data(pid: i32, secret: i32) -> Frame {
    message(b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    })
}

/// ReadyForQuery ('Z').
pub fn ready_for_query(status: TxStatus) -> Frame {
    message(b'Z', |b| {
        b.put_u8(match status {
            TxStatus::Idle => b'I',
            TxStatus::InBlock => b'T',
            TxStatus::Failed => b'E',
        })
    })
}

/// ParseComplete ('1').
pub fn parse_complete() -> Frame {
    message(b'1', |_| {})
}

/// CloseComplete ('3').
pub fn close_complete() -> Frame {
    message(b'3', |_| {})
}

/// NegotiateProtocolVersion ('v'): the newest minor version supported and the
/// protocol options (`_pq_.*`) not recognized.
pub fn negotiate_protocol_version(newest_minor: i32, unrecognized: &[&str]) -> Frame {
    message(b'v', |b| {
        b.put_i32(newest_minor);
        b.put_i32(unrecognized.len() as i32);
        for o in unrecognized {
            put_cstr(b, o.as_bytes());
        }
    })
}

/// StartupMessage (protocol 3.0) with parameters in order.
pub fn startup_message(params: &[(&str, &str)]) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    buf.put_i32(PROTOCOL_3_0);
    for (k, v) in params {
        put_cstr(&mut buf, k.as_bytes());
        put_cstr(&mut buf, v.as_bytes());
    }
    buf.put_u8(0);
    let len = buf.len() as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// CancelRequest for the given backend key.
pub fn cancel_request(pid: i32, secret: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_i32(16);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_i32(secret);
    buf.freeze()
}

/// PasswordMessage ('p') with a NUL-terminated password or md5 hash.
pub fn password_message(password: &[u8]) -> Frame {
    message(b'p', |b| put_cstr(b, password))
}

/// SASLInitialResponse ('p').
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Frame {
    message(b'p', |b| {
        put_cstr(b, mechanism.as_bytes());
        b.put_i32(data.len() as i32);
        b.put_slice(data);
    })
}

/// SASLResponse ('p').
pub fn sasl_response(data: &[u8]) -> Frame {
    message(b'p', |b| b.put_slice(data))
}

/// Query ('Q').
pub fn query(sql: &str) -> Frame {
    message(b'Q', |b| put_cstr(b, sql.as_bytes()))
}

/// Parse ('P') with the given statement name; `param_types` is the count and
/// OIDs section exactly as a client sent it.
pub fn parse(statement: &[u8], query_text: &[u8], param_types: &[u8]) -> Frame {
    message(b'P', |b| {
        put_cstr(b, statement);
        put_cstr(b, query_text);
        b.put_slice(param_types);
    })
}

/// Bind ('B') naming a different statement; `rest` is the formats and values
/// section exactly as the client sent it.
pub fn bind(portal: &[u8], statement: &[u8], rest: &[u8]) -> Frame {
    let mut buf = BytesMut::with_capacity(64);
    put_bind(&mut buf, portal, statement, rest);
    Frame::from_raw(buf.freeze())
}

/// Appends to `buf` what [`bind`] builds, without a frame of its own (the
/// relay's per-transaction path).
pub fn put_bind(buf: &mut BytesMut, portal: &[u8], statement: &[u8], rest: &[u8]) {
    append(buf, b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_slice(rest);
    })
}

/// Bind ('B') with every parameter in text format (`None` is NULL) and
/// text results.
pub fn bind_text(portal: &[u8], statement: &[u8], params: &[Option<&str>]) -> Frame {
    message(b'B', |b| {
        put_cstr(b, portal);
        put_cstr(b, statement);
        b.put_i16(0); // all parameters in text format
        b.put_i16(params.len() as i16);
        for p in params {
            match p {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
        b.put_i16(0); // all results in text format
    })
}

/// Execute ('E') of a portal, `max_rows` 0 meaning all.
pub fn execute(portal: &[u8], max_rows: i32) -> Frame {
    message(b'E', |b| {
        put_cstr(b, portal);
        b.put_i32(max_rows);
    })
}

/// RowDescription ('T') of one column: name, table OID 0, attribute 0,
/// type OID and size, type modifier -1, and format code.
pub fn row_description_one(name: &str, type_oid: u32, type_size: i16, format: i16) -> Frame {
    message(b'T', |b| {
        b.put_i16(1);
        put_cstr(b, name.as_bytes());
        b.put_u32(0);
        b.put_i16(0);
        b.put_u32(type_oid);
        b.put_i16(type_size);
        b.put_i32(-1);
        b.put_i16(format);
    })
}

/// DataRow ('D') of one non-NULL column.
pub fn data_row_one(value: &[u8]) -> Frame {
    message(b'D', |b| {
        b.put_i16(1);
        b.put_i32(value.len() as i32);
        b.put_slice(value);
    })
}

/// CommandComplete ('C') with its tag ("SELECT 1", "INSERT 0 1").
pub fn command_complete(tag: &str) -> Frame {
    message(b'C', |b| put_cstr(b, tag.as_bytes()))
}

/// BindComplete ('2').
pub fn bind_complete() -> Frame {
    message(b'2', |_| {})
}

/// NoData ('n').
pub fn no_data() -> Frame {
    message(b'n', |_| {})
}

/// Describe ('D') of a prepared statement.
pub fn describe_statement(statement: &[u8]) -> Frame {
    message(b'D', |b| {
        b.put_u8(b'S');
        put_cstr(b, statement);
    })
}

/// Sync ('S').
pub fn sync() -> Frame {
    message(b'S', |_| {})
}

/// Terminate ('X').
pub fn terminate() -> Frame {
    message(b'X', |_| {})
}
