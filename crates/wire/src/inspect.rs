//! Zero-copy views of the messages the proxy looks inside. Each returns `None`
//! for a malformed body; the caller answers with a protocol violation.

use crate::reader::Reader;

/// Frontend Parse ('P'): statement name, query text, parameter type OIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    pub statement: &'a [u8],
    pub query: &'a [u8],
    /// The parameter-type section (count and OIDs) exactly as sent.
    pub param_types: &'a [u8],
}

/// Decodes a Parse body.
pub fn parse(body: &[u8]) -> Option<Parse<'_>> {
    let mut r = Reader::new(body);
    let statement = r.cstr()?;
    let query = r.cstr()?;
    let param_types = r.rest();
    let mut t = Reader::new(param_types);
    let n = t.i16()?;
    if n < 0 || t.rest().len() != n as usize * 4 {
        return None;
    }
    Some(Parse {
        statement,
        query,
        param_types,
    })
}

/// A count (Int16) followed by that many type OIDs (Int32): the layout of a
/// Parse's parameter-type section and of a ParameterDescription body. Stops
/// at the first OID the body is too short for.
pub fn oid_list(body: &[u8]) -> Vec<u32> {
    let mut r = Reader::new(body);
    let n = r.i16().unwrap_or(0).max(0);
    (0..n).map_while(|_| r.i32().map(|o| o as u32)).collect()
}

/// Frontend Bind ('B'): the names, and the rest (formats, values) untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub rest: &'a [u8],
}

/// Decodes the names at the front of a Bind body.
pub fn bind(body: &[u8]) -> Option<Bind<'_>> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Some(Bind {
        portal,
        statement,
        rest: r.rest(),
    })
}

/// What a Describe or Close names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// 'S': a prepared statement.
    Statement(&'a [u8]),
    /// 'P': a portal.
    Portal(&'a [u8]),
}

/// Decodes a Describe ('D') or Close ('C') body.
pub fn target(body: &[u8]) -> Option<Target<'_>> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let name = r.cstr()?;
    if !r.rest().is_empty() {
        return None;
    }
    match kind {
        b'S' => Some(Target::Statement(name)),
        b'P' => Some(Target::Portal(name)),
        _ => None,
    }
}

/// Backend ParameterStatus ('S'): name and value.
pub fn parameter_status(body: &[u8]) -> Option<(&str, &str)> {
    let mut r = Reader::new(body);
    Some((r.str()?, r.str()?))
}

/// Backend BackendKeyData ('K'): process id and secret key.
pub fn backend_key_data(body: &[u8]) -> Option<(i32, i32)> {
    let mut r = Reader::new(body);
    Some((r.i32()?, r.i32()?))
}

/// Backend ReadyForQuery ('Z'): transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// 'I': not in a transaction block.
    Idle,
    /// 'T': in a transaction block.
    InBlock,
    /// 'E': in a failed transaction block.
    Failed,
}

/// Decodes a ReadyForQuery body.
pub fn ready_for_query(body: &[u8]) -> Option<TxStatus> {
    match body {
        [b'I'] => Some(TxStatus::Idle),
        [b'T'] => Some(TxStatus::InBlock),
        [b'E'] => Some(TxStatus::Failed),
        _ => None,
    }
}

/// Backend Authentication ('R') requests the proxy handles as a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    /// SASL: the mechanisms offered.
    Sasl(Vec<&'a str>),
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    /// Any other method (Kerberos, GSS, SSPI): unsupported by the proxy.
    Other(i32),
}

/// Decodes an Authentication body.
pub fn auth_request(body: &[u8]) -> Option<AuthRequest<'_>> {
    let mut r = Reader::new(body);
    let code = r.i32()?;
    Some(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::CleartextPassword,
        5 => {
            let s = r.take(4)?;
            AuthRequest::Md5Password {
                salt: [s[0], s[1], s[2], s[3]],
            }
        }
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = r.str()?;
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
            }
            AuthRequest::Sasl(mechs)
        }
        11 => AuthRequest::SaslContinue(r.rest()),
        12 => AuthRequest::SaslFinal(r.rest()),
        other => AuthRequest::Other(other),
    })
}

/// Frontend SASLInitialResponse ('p' after an AuthenticationSASL): mechanism and data.
pub fn sasl_initial_response(body: &[u8]) -> Option<(&str, &[u8])> {
    let mut r = Reader::new(body);
    let mech = r.str()?;
    let len = r.i32()?;
    let data = if len < 0 {
        &[][..]
    } else {
        r.take(len as usize)?
    };
    Some((mech, data))
}

/// Frontend PasswordMessage ('p'): the NUL-terminated password or hash.
pub fn password(body: &[u8]) -> Option<&[u8]> {
    Reader::new(body).cstr()
}

/// Fields of an ErrorResponse or NoticeResponse that the proxy logs or checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
    /// The whole body, every field included, to pass the error on intact.
    pub body: Vec<u8>,
}

/// Decodes the severity ('V', or 'S' for old servers), code and message fields.
pub fn error_fields(body: &[u8]) -> Option<ErrorFields> {
    let mut r = Reader::new(body);
    let mut fields = ErrorFields {
        body: body.to_vec(),
        ..ErrorFields::default()
    };
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            return Some(fields);
        }
        let value = String::from_utf8_lossy(r.cstr()?).into_owned();
        match kind {
            b'V' => fields.severity = value,
            b'S' if fields.severity.is_empty() => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
    }
}

/// The parameter section of a Bind body (everything after the portal and
/// statement names, i.e. [`Bind::rest`]), decoded without copying: the
/// values borrow from the message body.
///
/// Layout (see Bind in
/// <https://www.postgresql.org/docs/current/protocol-message-formats.html>):
/// Int16 C, Int16\[C\] parameter format codes; Int16 N, then N times Int32
/// length (-1 for NULL) and that many bytes; Int16 R, Int16\[R\] result
/// column format codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindParams<'a> {
    /// Parameter format codes as sent: none means every parameter is text,
    /// one applies to every parameter, otherwise one per parameter. Codes
    /// are not checked here (Postgres answers an unknown code with an
    /// ordinary error, not a protocol violation).
    pub formats: Vec<i16>,
    /// Parameter values in order; `None` is NULL (length -1).
    pub values: Vec<Option<&'a [u8]>>,
    /// Result column format codes as sent, by the same 0/1/N rule. Their
    /// count cannot be checked without the statement's row description.
    pub result_formats: Vec<i16>,
}

impl BindParams<'_> {
    /// The effective format code of parameter `i` (0 text, 1 binary): text
    /// when no codes were sent, the single code when one was sent, else the
    /// parameter's own code. An index past the codes gives 0.
    pub fn format_of(&self, i: usize) -> i16 {
        effective_format(&self.formats, i)
    }

    /// The effective format code of result column `column`, by the same rule
    /// as [`BindParams::format_of`]. A column past the codes gives 0 (Postgres
    /// rejects such a Bind when the statement runs).
    pub fn result_format_of(&self, column: usize) -> i16 {
        effective_format(&self.result_formats, column)
    }
}

/// The 0 / 1 / one-per-item rule shared by parameter and result formats.
fn effective_format(codes: &[i16], i: usize) -> i16 {
    match codes {
        [] => 0,
        [only] => *only,
        many => many.get(i).copied().unwrap_or(0),
    }
}

/// Decodes `rest` as returned by [`bind`] (the Bind body after the two
/// names). `None` if malformed: a truncated count or code, a value length
/// below -1 or past the end of the body, a parameter format count other than
/// 0, 1 or the number of values, or bytes after the result format codes.
///
/// The three counts are read as unsigned 16-bit integers, as the server does
/// (`pq_getmsgint(msg, 2)` in `exec_bind_message`), so a statement with more
/// than 32767 parameters (libpq allows 65535) is not mistaken for a
/// malformed message.
pub fn bind_params(rest: &[u8]) -> Option<BindParams<'_>> {
    let mut r = Reader::new(rest);
    let formats = codes(&mut r)?;
    let n = r.i16()? as u16 as usize;
    if formats.len() > 1 && formats.len() != n {
        return None;
    }
    // Each value needs at least its 4-byte length: bound the allocation by
    // what the body can hold, not by what the count claims.
    let mut values = Vec::with_capacity(n.min(r.rest().len() / 4));
    for _ in 0..n {
        let len = r.i32()?;
        values.push(match len {
            -1 => None,
            len if len < 0 => return None,
            len => Some(r.take(len as usize)?),
        });
    }
    let result_formats = codes(&mut r)?;
    if !r.rest().is_empty() {
        return None;
    }
    Some(BindParams {
        formats,
        values,
        result_formats,
    })
}

/// An Int16 count (unsigned, as the server reads it) and that many Int16 codes.
fn codes(r: &mut Reader<'_>) -> Option<Vec<i16>> {
    let n = r.i16()? as u16 as usize;
    let raw = r.take(n.checked_mul(2)?)?;
    Some(
        raw.chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}
