//! What the relay needs to answer a recognized upsert itself: the row its
//! Bind parameters carry (a simple Query's comes from
//! `Coalescer::inspect_query`), and the replies Postgres would have sent for
//! the statement, byte for byte.

use wire::build;
use wire::inspect;
use wire::Frame;

use crate::classify::{Reply, Template, ValueSource};
use crate::coalesce::values::param_text;

/// Type OID of `void`, what the coalesced functions return.
const VOID_OID: u32 = 2278;

/// The row of a Bind (its parameter section, `rest`) and the format of the
/// result column, or `None` when some value cannot be taken (unsupported
/// binary type, malformed): the statement then goes to Postgres as usual.
pub fn row_from_bind(
    t: &Template,
    rest: &[u8],
    param_oids: Option<&Vec<u32>>,
    declared: &[u8],
) -> Option<(Vec<Option<String>>, i16)> {
    let params = inspect::bind_params(rest)?;
    if params.values.len() < t.params {
        return None;
    }
    let declared = inspect::oid_list(declared);
    let row = t
        .values
        .iter()
        .map(|v| match v {
            ValueSource::Literal { text, .. } => Some(text.clone()),
            ValueSource::Param { index, .. } => {
                let oid = param_oids
                    .and_then(|o| o.get(*index).copied())
                    .or_else(|| declared.get(*index).copied())
                    .unwrap_or(0);
                let value = *params.values.get(*index)?;
                param_text(params.format_of(*index), value, oid).ok()
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some((row, params.result_format_of(0)))
}

/// RowDescription (function) or NoData (INSERT), for Describe of a portal.
pub fn describe_portal(t: &Template, format: i16) -> Frame {
    match &t.reply {
        Reply::FunctionRow { column } => build::row_description_one(column, VOID_OID, 4, format),
        Reply::Insert => build::no_data(),
    }
}

/// What Execute returns: the void row and "SELECT 1", or "INSERT 0 1".
pub fn execute_replies(t: &Template) -> Vec<Frame> {
    match &t.reply {
        Reply::FunctionRow { .. } => vec![
            build::data_row_one(b""),
            build::command_complete("SELECT 1"),
        ],
        Reply::Insert => vec![build::command_complete("INSERT 0 1")],
    }
}

/// The whole reply to a simple Query, without the ReadyForQuery.
pub fn simple_replies(t: &Template) -> Vec<Frame> {
    let mut out = Vec::new();
    if let Reply::FunctionRow { .. } = &t.reply {
        out.push(describe_portal(t, 0));
    }
    out.extend(execute_replies(t));
    out
}
