//! The admin console: a virtual database, [`DATABASE`], that users listed
//! in `admin_users` log in to (with psql, say) to query the proxy's state
//! with `SHOW …`, to pause and resume databases, to reload the config and
//! to shut the proxy down, as PgBouncer's `pgbouncer` console. It answers
//! from the proxy's own figures and never uses a server connection.
//!
//! - [`command`]: a query's text as a command.
//! - [`show`]: the `SHOW` result sets.
//! - [`table`]: result sets in the wire format.
//! - [`clients`]: the registry of logged-in clients.

pub mod clients;
pub mod command;
pub mod show;
pub mod table;

#[cfg(test)]
mod tests;

use bytes::BytesMut;
use wire::build::{self, Severity};
use wire::inspect::TxStatus;
use wire::{Frame, SqlState};

use crate::error::ClientError;
use crate::session::ClientIo;
use crate::state::Shared;
use command::{Command, SUPPORTED};

/// The console's database name. Not `pgcoalesce` (PgBouncer's console is
/// `pgbouncer`): the reference config and `pgcoalesce dev` already serve a
/// real database of that name.
pub const DATABASE: &str = "pgcoalesce_admin";

/// The longest piece of an unknown command quoted back.
const QUOTE_LIMIT: usize = 64;

/// The messages that end an admin login: AuthenticationOk, the parameters
/// clients expect (psql reads `server_version` and `client_encoding`),
/// ReadyForQuery. No BackendKeyData: there is nothing to cancel.
pub fn greeting() -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(build::auth_ok().raw());
    let params = [
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("server_encoding", "UTF8"),
        ("server_version", env!("CARGO_PKG_VERSION")),
        ("standard_conforming_strings", "on"),
    ];
    for (k, v) in params {
        out.extend_from_slice(build::parameter_status(k, v).raw());
    }
    out.extend_from_slice(build::ready_for_query(TxStatus::Idle).raw());
    out
}

/// Serves one logged-in admin until it leaves, or until the proxy shuts
/// down (then it is closed with 57P01 between commands).
pub async fn serve(shared: &Shared, io: &mut ClientIo) -> Result<(), ClientError> {
    let mut stopping = shared.stopping.subscribe();
    // After an error in an extended-protocol exchange, everything up to
    // the next Sync is ignored, as Postgres does.
    let mut skipping = false;
    loop {
        let frame = tokio::select! {
            f = io.read_frame() => f?,
            _ = async { drop(stopping.wait_for(|s| *s).await) } => {
                let bye = ClientError::fatal(SqlState::ADMIN_SHUTDOWN, "the proxy is shutting down");
                let _ = io.send(bye.to_frame().raw()).await;
                return Ok(());
            }
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        match frame.tag() {
            b'X' => return Ok(()),
            b'S' => {
                skipping = false;
                io.send(build::ready_for_query(TxStatus::Idle).raw())
                    .await?;
            }
            _ if skipping => {}
            b'Q' => {
                let (mut out, shutdown) = answer(shared, &frame).await;
                out.extend_from_slice(build::ready_for_query(TxStatus::Idle).raw());
                io.send(&out).await?;
                if shutdown {
                    tracing::info!("shutdown requested from the admin console");
                    shared.shutdown_request.send_replace(true);
                    return Ok(());
                }
            }
            // Flush asks for nothing the console holds back.
            b'H' => {}
            b'P' | b'B' | b'D' | b'E' | b'C' => {
                skipping = true;
                io.send(simple_only().raw()).await?;
            }
            // FunctionCall stands alone, like a Query.
            b'F' => {
                let mut out = BytesMut::from(&simple_only().raw()[..]);
                out.extend_from_slice(build::ready_for_query(TxStatus::Idle).raw());
                io.send(&out).await?;
            }
            other => {
                return Err(ClientError::fatal(
                    SqlState::PROTOCOL_VIOLATION,
                    format!(
                        "unexpected message {:?} on the admin console",
                        other as char
                    ),
                ))
            }
        }
    }
}

/// The reply to one simple Query (without its ReadyForQuery), and whether
/// the command was `SHUTDOWN`. `PAUSE` answers once the pause is complete.
async fn answer(shared: &Shared, query: &Frame) -> (BytesMut, bool) {
    let body = query.body();
    let text = body.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(text);
    let mut out = BytesMut::new();
    match command::parse(&text) {
        Command::Show(what) => return (show::show(shared, what), false),
        Command::Shutdown => {
            out.extend_from_slice(build::command_complete("SHUTDOWN").raw());
            return (out, true);
        }
        Command::Empty => out.extend_from_slice(build::raw_message(b'I', &[]).raw()),
        Command::Pause(database) => match databases(shared, database) {
            Ok(names) => {
                futures::future::join_all(names.iter().map(|db| shared.pause(db))).await;
                tracing::info!(databases = ?names, "paused from the admin console");
                out.extend_from_slice(build::command_complete("PAUSE").raw());
            }
            Err(e) => out.extend_from_slice(e.raw()),
        },
        Command::Resume(database) => match databases(shared, database) {
            Ok(names) => {
                for db in &names {
                    shared.resume(db);
                }
                tracing::info!(databases = ?names, "resumed from the admin console");
                out.extend_from_slice(build::command_complete("RESUME").raw());
            }
            Err(e) => out.extend_from_slice(e.raw()),
        },
        Command::Reload => match crate::reload::reload(shared).await {
            Ok(warnings) => {
                for w in warnings {
                    out.extend_from_slice(build::notice_warning(&w).raw());
                }
                out.extend_from_slice(build::command_complete("RELOAD").raw());
            }
            Err(e) => {
                let msg = format!("config not reloaded: {e}");
                out.extend_from_slice(
                    build::error_response(Severity::Error, SqlState::CONFIG_FILE_ERROR, &msg).raw(),
                );
            }
        },
        Command::Unknown => {
            let msg = format!(
                "unknown admin console command \"{}\"; supported: {SUPPORTED}",
                quote(&text)
            );
            out.extend_from_slice(
                build::error_response(Severity::Error, SqlState::SYNTAX_ERROR, &msg).raw(),
            );
        }
    }
    (out, false)
}

/// The databases a `PAUSE`/`RESUME` names: the one given, if configured,
/// else every configured one.
fn databases(shared: &Shared, database: Option<String>) -> Result<Vec<String>, Frame> {
    let live = shared.live();
    match database {
        Some(db) if live.config.database(&db).is_some() => Ok(vec![db]),
        Some(db) => Err(build::error_response(
            Severity::Error,
            SqlState::INVALID_CATALOG_NAME,
            &format!("no such database: {}", quote(&db)),
        )),
        None => Ok(live
            .config
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect()),
    }
}

/// The error for any message of the extended query protocol.
fn simple_only() -> Frame {
    build::error_response(
        Severity::Error,
        SqlState::FEATURE_NOT_SUPPORTED,
        "the admin console supports the simple query protocol only",
    )
}

/// The start of a command, for an error message.
fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
