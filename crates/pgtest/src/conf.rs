//! Cluster options and the configuration files derived from them.
//!
//! Owns the text of everything pgtest writes into a data directory:
//! the block appended to `postgresql.conf`, the per-instance
//! `pgtest_instance.conf` (port and socket dir, rewritten for replicas and on
//! port retries), and `pg_hba.conf`. Also owns SQL quoting helpers.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the per-instance include file inside the data directory.
pub(crate) const INSTANCE_CONF: &str = "pgtest_instance.conf";
/// Names of the TLS certificate and key copied into the data directory.
pub(crate) const SSL_CERT: &str = "server.crt";
pub(crate) const SSL_KEY: &str = "server.key";
/// Name of the client-certificate CA copied into the data directory.
pub(crate) const SSL_CA: &str = "root.crt";
/// The TCP addresses `pg_hba.conf` lines are written for.
const LOOPBACK: [&str; 2] = ["127.0.0.1/32", "::1/128"];

/// Authentication method required for TCP connections (`host` lines for
/// 127.0.0.1/32 and ::1/128, normal and replication). Connections over the
/// cluster's own unix socket are always `trust`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HbaAuth {
    /// No password needed.
    #[default]
    Trust,
    /// SCRAM-SHA-256 password authentication.
    ScramSha256,
    /// MD5 password authentication; the cluster also defaults
    /// `password_encryption = md5` so roles created afterwards get MD5
    /// verifiers and clients really see the MD5 exchange.
    Md5,
    /// A TLS client certificate whose common name is the role name,
    /// checked against [`ClusterOptions::ssl_ca_file`]. Postgres takes it on
    /// `hostssl` lines only, so its lines are written as such: plain TCP
    /// connections do not match them.
    Cert,
}

impl HbaAuth {
    /// The method keyword in `pg_hba.conf`.
    pub fn hba_method(self) -> &'static str {
        match self {
            HbaAuth::Trust => "trust",
            HbaAuth::ScramSha256 => "scram-sha-256",
            HbaAuth::Md5 => "md5",
            HbaAuth::Cert => "cert",
        }
    }
}

/// How to build a throwaway cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Authentication method for TCP connections. Default [`HbaAuth::Trust`].
    pub auth: HbaAuth,
    /// Extra `postgresql.conf` settings, appended after pgtest's defaults so
    /// they win (e.g. `("fsync", "on")` or `("max_connections", "400")`).
    /// Values are written as quoted strings.
    pub settings: Vec<(String, String)>,
    /// Password given to the bootstrap superuser `postgres`. Default `Some("postgres")`.
    pub superuser_password: Option<String>,
    /// TLS for TCP connections: PEM files (certificate chain, private key)
    /// copied into the data directory (the key with mode 0600, both owned
    /// by the server's OS user) and served with `ssl = on`. Default none:
    /// `ssl = off`.
    pub ssl_files: Option<(PathBuf, PathBuf)>,
    /// With `ssl_files`: TCP connections must use TLS (`hostssl` rules,
    /// and `hostnossl ... reject` for plain ones). Default false.
    pub ssl_required: bool,
    /// With `ssl_files`: PEM file with the CA certificates client
    /// certificates must chain to, copied into the data directory (owned
    /// by the server's OS user) and set as `ssl_ca_file`; the server then
    /// asks TLS clients for a certificate (needed by [`HbaAuth::Cert`]).
    /// Default none.
    pub ssl_ca_file: Option<PathBuf>,
    /// TCP authentication of single roles, ahead of `auth` (the first
    /// matching `pg_hba.conf` line wins): e.g. an md5 role in a cluster
    /// that otherwise requires SCRAM. Names are letters, digits and `_`.
    /// Default none.
    pub role_auth: Vec<(String, HbaAuth)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            auth: HbaAuth::Trust,
            settings: Vec::new(),
            superuser_password: Some("postgres".to_owned()),
            ssl_files: None,
            ssl_required: false,
            ssl_ca_file: None,
            role_auth: Vec::new(),
        }
    }
}

impl ClusterOptions {
    /// Options with the given TCP authentication method, other fields default.
    pub fn with_auth(auth: HbaAuth) -> Self {
        ClusterOptions {
            auth,
            ..ClusterOptions::default()
        }
    }

    /// Serves TLS with the PEM files `cert` and `key`; `required` refuses
    /// plain TCP connections (builder style; see [`ClusterOptions::ssl_files`]).
    pub fn ssl(mut self, cert: &Path, key: &Path, required: bool) -> Self {
        self.ssl_files = Some((cert.to_path_buf(), key.to_path_buf()));
        self.ssl_required = required;
        self
    }

    /// Checks client certificates against the CA certificates in the PEM
    /// file `ca` (builder style; see [`ClusterOptions::ssl_ca_file`]).
    pub fn ssl_client_ca(mut self, ca: &Path) -> Self {
        self.ssl_ca_file = Some(ca.to_path_buf());
        self
    }

    /// Authenticates `role` with `auth` on TCP, whatever `auth` says for
    /// the others (builder style; see [`ClusterOptions::role_auth`]).
    pub fn role_auth(mut self, role: &str, auth: HbaAuth) -> Self {
        self.role_auth.push((role.to_owned(), auth));
        self
    }

    /// Adds one `postgresql.conf` setting (builder style).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Rejects anything that is not a plain (possibly dotted) GUC name.
pub(crate) fn check_setting_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !name.starts_with('.')
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "not a configuration parameter name: {name:?}"
        )))
    }
}

/// Quotes a value for `postgresql.conf` (single quotes, embedded ones doubled).
fn conf_value(value: &str) -> Result<String> {
    if value.contains('\n') || value.contains('\r') {
        return Err(Error::InvalidArgument(format!(
            "configuration value contains a line break: {value:?}"
        )));
    }
    Ok(format!(
        "'{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    ))
}

/// The block appended to the `postgresql.conf` written by initdb.
pub(crate) fn main_conf_block(opts: &ClusterOptions) -> Result<String> {
    let mut out = String::from("\n# ---- added by pgtest ----\n");
    let mut defaults: Vec<(&str, &str)> = vec![
        ("listen_addresses", "127.0.0.1"),
        ("wal_level", "replica"),
        ("max_wal_senders", "10"),
        ("hot_standby", "on"),
        ("fsync", "off"),
        ("shared_buffers", "128MB"),
        ("max_connections", "200"),
        ("logging_collector", "off"),
        ("log_line_prefix", "%m [%p] %q%u@%d "),
    ];
    if opts.auth == HbaAuth::Md5 {
        defaults.push(("password_encryption", "md5"));
    }
    if opts.ssl_files.is_some() {
        defaults.extend([
            ("ssl", "on"),
            ("ssl_cert_file", SSL_CERT),
            ("ssl_key_file", SSL_KEY),
        ]);
        if opts.ssl_ca_file.is_some() {
            defaults.push(("ssl_ca_file", SSL_CA));
        }
    } else if opts.ssl_ca_file.is_some() {
        return Err(Error::InvalidArgument(
            "ssl_ca_file needs ssl_files (client certificates come over TLS)".into(),
        ));
    }
    for (name, value) in defaults {
        out.push_str(&format!("{name} = {}\n", conf_value(value)?));
    }
    out.push_str("# ---- ClusterOptions::settings ----\n");
    for (name, value) in &opts.settings {
        check_setting_name(name)?;
        out.push_str(&format!("{name} = {}\n", conf_value(value)?));
    }
    // Instance-specific values come last so a copied data dir (replica) only
    // needs this one file rewritten.
    out.push_str(&format!("include_if_exists = '{INSTANCE_CONF}'\n"));
    Ok(out)
}

/// Contents of [`INSTANCE_CONF`]: what differs between a primary and its replicas.
pub(crate) fn instance_conf(port: u16, socket_dir: &Path) -> Result<String> {
    let dir = socket_dir.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("socket dir is not UTF-8: {}", socket_dir.display()))
    })?;
    Ok(format!(
        "# written by pgtest for this instance\nport = {port}\nunix_socket_directories = {}\n",
        conf_value(dir)?
    ))
}

/// `pg_hba.conf` for `opts`: local socket trusted, TCP (normal and
/// replication) from loopback with `opts.auth`, with the lines of
/// `opts.role_auth` before the TCP ones, and TLS required on TCP when
/// `opts.ssl_required` (and TLS files are given).
pub(crate) fn hba_conf_for(opts: &ClusterOptions) -> Result<String> {
    for (role, _) in &opts.role_auth {
        if role.is_empty() || !role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::InvalidArgument(format!(
                "role_auth: not a plain role name: {role:?}"
            )));
        }
    }
    let tls_only = opts.ssl_required && opts.ssl_files.is_some();
    Ok(hba_text(opts.auth, &opts.role_auth, tls_only))
}

/// The local lines, then `roles`' TCP lines, then everyone's; with
/// `tls_only`, every TCP line is `hostssl` and plain TCP is rejected.
fn hba_text(auth: HbaAuth, roles: &[(String, HbaAuth)], tls_only: bool) -> String {
    let mut out = String::from(
        "# written by pgtest\n\
         local   all          all                 trust\n\
         local   replication  all                 trust\n",
    );
    let role_lines = roles
        .iter()
        .map(|(role, auth)| ("all", role.as_str(), *auth));
    let general = ["all", "replication"].map(|db| (db, "all", auth));
    for (db, role, auth) in role_lines.chain(general) {
        // `cert` is only valid on hostssl lines.
        let kind = if tls_only || auth == HbaAuth::Cert {
            "hostssl"
        } else {
            "host"
        };
        for addr in LOOPBACK {
            out.push_str(&format!(
                "{kind:<8}{db:<13}{role}   {addr:<13} {}\n",
                auth.hba_method()
            ));
        }
    }
    if tls_only {
        for addr in LOOPBACK {
            out.push_str(&format!("hostnossl    all  all   {addr}  reject\n"));
        }
    }
    out
}

/// Quotes an SQL identifier (`"..."`, embedded quotes doubled).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes an SQL string literal (`'...'`, embedded quotes doubled; assumes
/// `standard_conforming_strings = on`, the server default).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_hba.conf` with `auth` for everyone and nothing else.
    fn hba_conf(auth: HbaAuth) -> String {
        hba_text(auth, &[], false)
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(conf_value("a'b").unwrap(), "'a''b'");
        assert!(conf_value("a\nb").is_err());
    }

    #[test]
    fn setting_names() {
        assert!(check_setting_name("max_connections").is_ok());
        assert!(check_setting_name("app.current_agent_id").is_ok());
        assert!(check_setting_name("x; drop").is_err());
        assert!(check_setting_name("").is_err());
    }

    #[test]
    fn user_settings_come_after_defaults() {
        let opts = ClusterOptions::default().setting("fsync", "on");
        let text = main_conf_block(&opts).unwrap();
        let default_pos = text.find("fsync = 'off'").unwrap();
        let user_pos = text.find("fsync = 'on'").unwrap();
        assert!(user_pos > default_pos);
        assert!(text.trim_end().ends_with(&format!("'{INSTANCE_CONF}'")));
    }

    #[test]
    fn ssl_options_turn_tls_on_and_may_require_it() {
        let opts = ClusterOptions::default().ssl(Path::new("/c.pem"), Path::new("/k.pem"), true);
        let text = main_conf_block(&opts).unwrap();
        assert!(text.contains("ssl = 'on'") && text.contains("ssl_key_file = 'server.key'"));
        let hba = hba_conf_for(&opts).unwrap();
        assert!(!hba.contains("\nhost "), "{hba}");
        assert!(
            hba.contains("hostssl all          all   127.0.0.1/32"),
            "{hba}"
        );
        assert!(
            hba.contains("hostnossl    all  all   127.0.0.1/32  reject"),
            "{hba}"
        );
        let optional = ClusterOptions::default().ssl(Path::new("/c"), Path::new("/k"), false);
        assert_eq!(hba_conf_for(&optional).unwrap(), hba_conf(HbaAuth::Trust));
        assert!(!main_conf_block(&ClusterOptions::default())
            .unwrap()
            .contains("ssl"));
    }

    #[test]
    fn role_auth_lines_come_before_the_general_ones() {
        let opts =
            ClusterOptions::with_auth(HbaAuth::ScramSha256).role_auth("old_app", HbaAuth::Md5);
        let hba = hba_conf_for(&opts).unwrap();
        let role = hba
            .find("host    all          old_app   127.0.0.1/32  md5")
            .unwrap();
        let general = hba
            .find("host    all          all   127.0.0.1/32  scram-sha-256")
            .unwrap();
        assert!(role < general, "{hba}");
        assert!(hba.find("local").unwrap() < role, "{hba}");
        let bad = ClusterOptions::default().role_auth("x all", HbaAuth::Trust);
        assert!(hba_conf_for(&bad).is_err());
    }

    #[test]
    fn cert_lines_are_hostssl_and_come_before_the_general_ones() {
        let ca = Path::new("/ca.pem");
        let opts = ClusterOptions::with_auth(HbaAuth::ScramSha256)
            .ssl(Path::new("/c.pem"), Path::new("/k.pem"), false)
            .ssl_client_ca(ca)
            .role_auth("certrole", HbaAuth::Cert)
            .role_auth("old_app", HbaAuth::Md5);
        let hba = hba_conf_for(&opts).unwrap();
        let expected = "# written by pgtest\n\
            local   all          all                 trust\n\
            local   replication  all                 trust\n\
            hostssl all          certrole   127.0.0.1/32  cert\n\
            hostssl all          certrole   ::1/128       cert\n\
            host    all          old_app   127.0.0.1/32  md5\n\
            host    all          old_app   ::1/128       md5\n\
            host    all          all   127.0.0.1/32  scram-sha-256\n\
            host    all          all   ::1/128       scram-sha-256\n\
            host    replication  all   127.0.0.1/32  scram-sha-256\n\
            host    replication  all   ::1/128       scram-sha-256\n";
        assert_eq!(hba, expected);
        let text = main_conf_block(&opts).unwrap();
        assert!(text.contains("ssl_ca_file = 'root.crt'"), "{text}");

        // Cert for everyone: hostssl lines only, replication included.
        let hba = hba_conf(HbaAuth::Cert);
        assert!(!hba.contains("\nhost "), "{hba}");
        assert!(
            hba.contains("hostssl replication  all   ::1/128       cert"),
            "{hba}"
        );
        // A client CA means nothing without TLS.
        let no_tls = ClusterOptions::default().ssl_client_ca(ca);
        assert!(main_conf_block(&no_tls).is_err());
    }

    #[test]
    fn md5_sets_password_encryption() {
        let text = main_conf_block(&ClusterOptions::with_auth(HbaAuth::Md5)).unwrap();
        assert!(text.contains("password_encryption = 'md5'"));
        assert!(hba_conf(HbaAuth::Md5).contains("127.0.0.1/32  md5"));
    }
}
