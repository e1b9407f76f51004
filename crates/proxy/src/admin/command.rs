//! What a console query asks for. Commands are case-insensitive, may end in
//! semicolons and may have any whitespace between their words.

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A `SHOW` command.
    Show(Show),
    /// `SHUTDOWN`: the same graceful shutdown as SIGTERM.
    Shutdown,
    /// A PgBouncer command the console knows but does not implement yet.
    NotYet(&'static str),
    /// Nothing but whitespace and semicolons.
    Empty,
    /// Anything else.
    Unknown,
}

/// What a `SHOW` command lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    Pools,
    Clients,
    Servers,
    Stats,
    Coalesce,
    Replicas,
    Config,
    Help,
    Version,
}

/// Commands known but not built yet.
const NOT_YET: [&str; 3] = ["PAUSE", "RESUME", "RELOAD"];

/// The commands the console answers, for help and error messages.
pub const SUPPORTED: &str = "SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, \
     SHOW COALESCE, SHOW REPLICAS, SHOW CONFIG, SHOW HELP, SHOW VERSION, SHUTDOWN";

/// Reads one query's text as a command.
pub fn parse(text: &str) -> Command {
    let text = text.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => Command::Empty,
        ["SHOW", what] => match show(what) {
            Some(s) => Command::Show(s),
            None => Command::Unknown,
        },
        ["SHUTDOWN"] => Command::Shutdown,
        [first, ..] => match NOT_YET.iter().find(|n| *n == first) {
            Some(name) => Command::NotYet(name),
            None => Command::Unknown,
        },
    }
}

fn show(what: &str) -> Option<Show> {
    Some(match what {
        "POOLS" => Show::Pools,
        "CLIENTS" => Show::Clients,
        "SERVERS" => Show::Servers,
        "STATS" => Show::Stats,
        "COALESCE" => Show::Coalesce,
        "REPLICAS" => Show::Replicas,
        "CONFIG" => Show::Config,
        "HELP" => Show::Help,
        "VERSION" => Show::Version,
        _ => return None,
    })
}
