//! SQLSTATE codes the proxy itself reports.
//! <https://www.postgresql.org/docs/current/errcodes-appendix.html>

/// A five-character SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(&'static str);

impl SqlState {
    /// 08001 sqlclient_unable_to_establish_sqlconnection
    pub const CONNECTION_UNABLE: SqlState = SqlState("08001");
    /// 08006 connection_failure
    pub const CONNECTION_FAILURE: SqlState = SqlState("08006");
    /// 08P01 protocol_violation
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    /// 0A000 feature_not_supported
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    /// 28000 invalid_authorization_specification
    pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
    /// 28P01 invalid_password
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    /// 42501 insufficient_privilege
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    /// 42601 syntax_error
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    /// 3D000 invalid_catalog_name (unknown database)
    pub const INVALID_CATALOG_NAME: SqlState = SqlState("3D000");
    /// 53300 too_many_connections
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    /// 57P01 admin_shutdown
    pub const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");
    /// 57014 query_canceled (also used when a wait for a server times out)
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    /// 53400 configuration_limit_exceeded
    pub const CONFIGURATION_LIMIT_EXCEEDED: SqlState = SqlState("53400");
    /// 54000 program_limit_exceeded
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    /// XX000 internal_error
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
    /// F0000 config_file_error
    pub const CONFIG_FILE_ERROR: SqlState = SqlState("F0000");

    /// The five characters.
    pub fn code(&self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
