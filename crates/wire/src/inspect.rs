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
}

/// Decodes the severity ('V', or 'S' for old servers), code and message fields.
pub fn error_fields(body: &[u8]) -> Option<ErrorFields> {
    let mut r = Reader::new(body);
    let mut fields = ErrorFields::default();
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
