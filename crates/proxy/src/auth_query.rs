//! Users who are not in the config, looked up in Postgres itself
//! (PgBouncer's `auth_user` and `auth_query`): the proxy checks out a
//! connection of the client's database as the database's `auth_user`, runs
//! `auth_query` with the user name bound as `$1` (never spliced into the
//! SQL), and authenticates the client against the password hash it
//! returns: an md5 hash or a SCRAM verifier.
//!
//! The proxy has no password for such a user, so its own login to Postgres
//! uses what the client's login proved (see [`crate::server_auth`]).

use wire::SqlState;

use crate::auth::{failed, Credential};
use crate::error::ClientError;
use crate::server::{lost, sqlstate_from};
use crate::state::{Live, Shared};

/// Looks `user` up for a login to `database` and returns the credential to
/// authenticate the client with.
///
/// It runs at every login and nothing is kept across logins, as in
/// PgBouncer: a password changed or a role dropped in Postgres counts from
/// the next login on.
///
/// Errors are for the client: 28000 when the database has no `auth_user`
/// (the user does not exist as far as the proxy knows), 28P01 when Postgres
/// has no usable password for the user (no row, a NULL, or a hash the proxy
/// cannot use, the last one also logged), and the connection's or the
/// server's code when the lookup itself fails (logged, details not sent).
pub async fn lookup(
    shared: &Shared,
    live: &Live,
    database: &str,
    user: &str,
) -> Result<Credential, ClientError> {
    let auth_user = live
        .config
        .database(database)
        .and_then(|db| live.config.auth_user_for(db));
    let Some(auth_user) = auth_user else {
        return Err(unknown_role(user));
    };
    // Validation guarantees auth_user is configured, so there is a pool.
    let pool = shared
        .pool_in(live, database, auth_user)
        .ok_or_else(|| unknown_role(user))?;
    let mut lease = pool.acquire().await.map_err(|e| {
        // The proxy's own login failing is no verdict on the client's
        // password: say so with a connection error, not a 28xxx one.
        let code = match e.code {
            SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION => {
                SqlState::CONNECTION_UNABLE
            }
            code => code,
        };
        lookup_failed(user, code, e)
    })?;
    let rows = match lease.execute(&live.config.auth_query, &[Some(user)]).await {
        Ok(Ok(done)) => done.rows,
        Ok(Err(fields)) => {
            let why = format!("auth_query failed: {} {}", fields.code, fields.message);
            return Err(lookup_failed(user, sqlstate_from(&fields.code), why));
        }
        Err(e) => {
            lease.discard();
            return Err(lookup_failed(user, SqlState::CONNECTION_FAILURE, lost(e)));
        }
    };
    drop(lease);
    let Some(row) = rows.first() else {
        tracing::debug!(user, database, "auth_query: no such user");
        return Err(failed(user));
    };
    let Some(secret) = row.get(1) else {
        tracing::warn!(
            database,
            "auth_query returned {} column(s); it must return (name, password)",
            row.len()
        );
        return Err(failed(user));
    };
    let Some(secret) = secret else {
        tracing::debug!(user, database, "auth_query: the user has no password");
        return Err(failed(user));
    };
    Credential::from_stored(secret).ok_or_else(|| {
        tracing::warn!(
            user,
            database,
            "auth_query returned a password that is neither an md5 hash nor a \
             SCRAM-SHA-256 verifier; refusing the login"
        );
        failed(user)
    })
}

/// A user neither configured nor looked up (Postgres's message and code).
fn unknown_role(user: &str) -> ClientError {
    ClientError::fatal(
        SqlState::INVALID_AUTHORIZATION,
        format!("role \"{user}\" does not exist"),
    )
}

/// The lookup could not be done; `why` is logged, never sent (the client
/// has not authenticated yet).
fn lookup_failed(user: &str, code: SqlState, why: impl std::fmt::Display) -> ClientError {
    tracing::warn!(user, error = %why, "auth_query lookup failed");
    ClientError::fatal(
        code,
        format!("could not look up user \"{user}\" on the database server"),
    )
}
