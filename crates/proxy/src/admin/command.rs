//! What a console query asks for. Commands are case-insensitive, may end in
//! semicolons and may have any whitespace between their words.

/// One console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A `SHOW` command.
    Show(Show),
    /// `SHUTDOWN`: the same graceful shutdown as SIGTERM.
    Shutdown,
    /// `PAUSE [db]`: hold new checkouts, wait for busy server connections,
    /// close them. No name: every database.
    Pause(Option<String>),
    /// `RESUME [db]`: undo `PAUSE`.
    Resume(Option<String>),
    /// `RELOAD`: read the config again and apply it.
    Reload,
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

/// The commands the console answers, for help and error messages.
pub const SUPPORTED: &str = "SHOW POOLS, SHOW CLIENTS, SHOW SERVERS, SHOW STATS, \
     SHOW COALESCE, SHOW REPLICAS, SHOW CONFIG, SHOW HELP, SHOW VERSION, PAUSE [db], \
     RESUME [db], RELOAD, SHUTDOWN";

/// Reads one query's text as a command. Keywords are case-insensitive; a
/// database name is taken as written (a quoted one without its quotes).
pub fn parse(text: &str) -> Command {
    let text = text.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let original: Vec<&str> = text.split_whitespace().collect();
    let words: Vec<String> = original.iter().map(|w| w.to_ascii_uppercase()).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let name = |i: usize| database_name(original[i]);
    match words.as_slice() {
        [] => Command::Empty,
        ["SHOW", what] => match show(what) {
            Some(s) => Command::Show(s),
            None => Command::Unknown,
        },
        ["SHUTDOWN"] => Command::Shutdown,
        ["RELOAD"] => Command::Reload,
        ["PAUSE"] => Command::Pause(None),
        ["PAUSE", _] => name(1).map_or(Command::Unknown, |n| Command::Pause(Some(n))),
        ["RESUME"] => Command::Resume(None),
        ["RESUME", _] => name(1).map_or(Command::Unknown, |n| Command::Resume(Some(n))),
        _ => Command::Unknown,
    }
}

/// `app` or `"App"` as a name; `None` for a malformed quoted one.
fn database_name(word: &str) -> Option<String> {
    match word.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.is_empty() && !inner.contains('"')).then(|| inner.to_owned())
        }
        None => Some(word.to_owned()),
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
