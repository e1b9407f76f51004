//! Reads that outlive their replica: a read sent to a replica is kept until
//! the replica starts answering it, so that when the replica dies first (or
//! cancels it for a recovery conflict) the read runs on another server and
//! the client never sees the failure.
//!
//! Only the stretch before the answer is covered: the client's messages
//! since the read took the replica, and the server's acknowledgements
//! (ParseComplete, BindComplete, descriptions) held back meanwhile. Once a
//! row, a result or any other error arrives, the read has been answered and
//! a failure is the client's to see.

use wire::inspect;
use wire::Frame;

/// A read on a replica that has not been answered yet.
pub struct Replay {
    /// The client's messages since the read took the replica, in order.
    pub frames: Vec<Frame>,
    /// Replies owed before them (all made up by the proxy, none sent yet
    /// when the replica was attached).
    pub owed_before: usize,
    /// [`super::Exchange::delivered`] when the replica was attached.
    pub delivered: u64,
    /// Server acknowledgements held back until the replica answers.
    pub held: Vec<Frame>,
}

/// What one server message means for a read that may still be retried.
#[derive(Debug, PartialEq, Eq)]
pub enum Judged {
    /// An acknowledgement that says nothing yet: keep it back.
    Hold,
    /// The replica failed before answering: run the read elsewhere.
    /// `down`: the replica itself is gone (not just this read's conflict).
    Retry { down: bool },
    /// The read is being answered: stop keeping it.
    Answer,
}

impl Replay {
    pub fn new(owed_before: usize, delivered: u64) -> Replay {
        Replay {
            frames: Vec::new(),
            owed_before,
            delivered,
            held: Vec::new(),
        }
    }

    /// How many of the replies owed before the read are still unsent, or
    /// `None` when some reply owed after it already went to the client
    /// (so the read cannot be replayed without the client noticing).
    pub fn unsent_before(&self, delivered: u64) -> Option<usize> {
        let sent = usize::try_from(delivered.saturating_sub(self.delivered)).ok()?;
        self.owed_before.checked_sub(sent)
    }
}

/// Judges one server message. `terminal`: the client asked for a reply
/// that ends the exchange (Sync or a simple Query), so acknowledgements may
/// wait for it; without one (Flush only) the client may be waiting for
/// exactly those, and they go out at once.
pub fn judge(frame: &Frame, terminal: bool) -> Judged {
    match frame.tag() {
        b'1' | b'2' | b't' | b'T' | b'n' | b'S' | b'N' if terminal => Judged::Hold,
        b'E' => {
            let fields = inspect::error_fields(frame.body()).unwrap_or_default();
            let fatal = matches!(fields.severity.as_str(), "FATAL" | "PANIC");
            if fatal {
                Judged::Retry { down: true }
            } else if fields.code == "40001" {
                // "canceling statement due to conflict with recovery"
                Judged::Retry { down: false }
            } else {
                Judged::Answer
            }
        }
        _ => Judged::Answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::build::{self, Severity};

    #[test]
    fn acknowledgements_wait_only_for_a_terminal_reply() {
        let bind = build::bind_complete();
        assert_eq!(judge(&bind, true), Judged::Hold);
        assert_eq!(judge(&bind, false), Judged::Answer);
        let row = build::data_row_one(b"1");
        assert_eq!(judge(&row, true), Judged::Answer);
    }

    #[test]
    fn errors() {
        let fatal = build::error_response_code(Severity::Fatal, "57P01", "terminating");
        assert_eq!(judge(&fatal, true), Judged::Retry { down: true });
        let conflict = build::error_response_code(Severity::Error, "40001", "conflict");
        assert_eq!(judge(&conflict, false), Judged::Retry { down: false });
        let plain = build::error_response_code(Severity::Error, "42P01", "no such table");
        assert_eq!(judge(&plain, true), Judged::Answer);
    }

    #[test]
    fn unsent_counts_only_replies_owed_before() {
        let r = Replay::new(2, 10);
        assert_eq!(r.unsent_before(10), Some(2));
        assert_eq!(r.unsent_before(12), Some(0));
        assert_eq!(r.unsent_before(13), None);
    }
}
