//! One connection's subscriptions, and the frames pub/sub sends.
//!
//! The shapes are sentinel's: confirmations `[kind, channel, count]` where the count is channels
//! plus patterns, messages `[message, channel, payload]` and `[pmessage, pattern, channel,
//! payload]`; RESP3 sends all of them as push frames. A message that matches both a channel and
//! patterns is delivered once per match, as Valkey does.

use bytes::Bytes;
use sentinel_protocol::reply::Reply;

use sentinel_protocol::event::Channel;

use crate::service::registry::{TapMessage, TapScope};

/// The channels and patterns one connection subscribed to, in subscription order.
#[derive(Debug, Default)]
pub struct Subscriptions {
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
}

/// Which of the two lists a command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    Pattern,
}

impl Kind {
    fn subscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
        }
    }

    fn unsubscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
        }
    }
}

impl Subscriptions {
    /// Channels plus patterns: the count every confirmation carries.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Channels subscribed to (`CLIENT INFO`'s `sub`).
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Patterns subscribed to (`CLIENT INFO`'s `psub`).
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// The narrowest tap that carries every message this connection can match; `None` when
    /// it is not subscribed.
    pub fn tap_scope(&self) -> Option<TapScope> {
        if !self.is_active() {
            None
        } else if self.patterns.is_empty()
            && self
                .channels
                .iter()
                .all(|channel| channel.as_ref() == Channel::SwitchMaster.as_bytes())
        {
            Some(TapScope::SwitchMaster)
        } else {
            Some(TapScope::Everything)
        }
    }

    /// Whether the connection is in subscribed mode.
    pub fn is_active(&self) -> bool {
        self.count() > 0
    }

    fn list(&mut self, kind: Kind) -> &mut Vec<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
        }
    }

    /// Subscribes to each name; one confirmation per name, even for a repeat.
    pub fn subscribe(&mut self, kind: Kind, names: &[Bytes], replies: &mut Vec<Reply>) {
        for name in names {
            let list = self.list(kind);
            if !list.contains(name) {
                // Copied: the argument is a slice of the read buffer, which a kept slice
                // would pin for as long as the subscription lasts.
                list.push(Bytes::copy_from_slice(name));
            }
            replies.push(confirmation(
                kind.subscribe_word(),
                Reply::Bulk(name.clone()),
                self.count(),
            ));
        }
    }

    /// Unsubscribes from each name (every one when `names` is empty); one confirmation per
    /// name, and a single `[kind, null, count]` when there was nothing to leave.
    pub fn unsubscribe(&mut self, kind: Kind, names: &[Bytes], replies: &mut Vec<Reply>) {
        let targets: Vec<Bytes> = if names.is_empty() {
            self.list(kind).clone()
        } else {
            names.to_vec()
        };
        if targets.is_empty() {
            replies.push(confirmation(
                kind.unsubscribe_word(),
                Reply::Null,
                self.count(),
            ));
            return;
        }
        for name in targets {
            self.list(kind).retain(|existing| *existing != name);
            replies.push(confirmation(
                kind.unsubscribe_word(),
                Reply::Bulk(name),
                self.count(),
            ));
        }
    }

    /// The frames `message` produces for this connection (none if nothing matches).
    pub fn deliver(&self, message: &TapMessage, out: &mut Vec<Reply>) {
        let channel = message.channel.as_bytes();
        if self
            .channels
            .iter()
            .any(|subscribed| subscribed.as_ref() == channel)
        {
            out.push(Reply::Push(vec![
                Reply::bulk_static("message"),
                Reply::Bulk(message.channel.to_bytes()),
                Reply::Bulk(message.payload.clone()),
            ]));
        }
        for pattern in &self.patterns {
            if glob_match(pattern, channel) {
                out.push(Reply::Push(vec![
                    Reply::bulk_static("pmessage"),
                    Reply::Bulk(pattern.clone()),
                    Reply::Bulk(message.channel.to_bytes()),
                    Reply::Bulk(message.payload.clone()),
                ]));
            }
        }
    }
}

fn confirmation(kind: &'static str, name: Reply, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::bulk_static(kind),
        name,
        Reply::Integer(i64::try_from(count).unwrap_or(i64::MAX)),
    ])
}

/// Valkey's glob (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, and `\` to escape. Iterative
/// with one backtrack point, so a hostile pattern costs O(pattern x text), never exponential.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, text[t]) {
                        if matched {
                            p = next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                literal => {
                    if literal == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last `*` swallow one more byte, or fail.
        match star {
            Some((star_p, star_t)) => {
                p = star_p;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches one byte against the class starting at `pattern[open] == b'['`. Returns whether it
/// matched and the index after the class, or `None` for an unterminated class.
fn class_match(pattern: &[u8], open: usize, byte: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        let current = *pattern.get(i)?;
        match current {
            b']' => break,
            b'\\' => {
                let escaped = *pattern.get(i + 1)?;
                matched |= escaped == byte;
                i += 2;
            }
            low if pattern.get(i + 1) == Some(&b'-')
                && pattern.get(i + 2).is_some_and(|&c| c != b']') =>
            {
                let high = pattern[i + 2];
                let (low, high) = if low <= high {
                    (low, high)
                } else {
                    (high, low)
                };
                matched |= (low..=high).contains(&byte);
                i += 3;
            }
            single => {
                matched |= single == byte;
                i += 1;
            }
        }
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_valkey() {
        let yes = |p: &str, t: &str| assert!(glob_match(p.as_bytes(), t.as_bytes()), "{p} ~ {t}");
        let no = |p: &str, t: &str| assert!(!glob_match(p.as_bytes(), t.as_bytes()), "{p} !~ {t}");
        yes("*", "+switch-master");
        yes("*", "");
        yes("+switch-*", "+switch-master");
        yes("+?down", "+sdown");
        yes("+[so]down", "+odown");
        no("+[^so]down", "+odown");
        yes("+[a-z]down", "+sdown");
        yes("\\*", "*");
        no("\\*", "x");
        no("+sdown", "-sdown");
        yes("*master*", "+switch-master");
        no("*master", "+switch-master-x");
        yes("a*b*c", "aXXbYYc");
        no("a*b*c", "aXXbYY");
        yes("[", "[");
    }

    #[test]
    fn a_pathological_pattern_finishes_quickly() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(5000);
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
    }
}
