//! Rendering raw frames for messages. Typed readers live in the protocol crate
//! (`sentinel_protocol::{role, sentinel, info, event}`); the lab only needs to print what it could
//! not read.

use crate::client::Frame;

/// The text of a string-like frame.
pub fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::SimpleString(b) | Frame::BulkString(b) => Some(String::from_utf8_lossy(b).into()),
        Frame::Error(s) => Some(s.to_string()),
        Frame::Integer(i) => Some(i.to_string()),
        Frame::Array(_) | Frame::Null => None,
    }
}

/// A frame rendered for humans (error messages and reports).
pub fn render(frame: &Frame) -> String {
    match frame {
        Frame::SimpleString(b) => format!("+{}", String::from_utf8_lossy(b)),
        Frame::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Frame::Error(s) => format!("-{s}"),
        Frame::Integer(i) => format!(":{i}"),
        Frame::Null => "(nil)".into(),
        Frame::Array(items) => {
            let inner: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

/// `flags` of a sentinel record say the instance is down or unreachable.
pub fn flags_down(flags: &sentinel_protocol::sentinel::Flags) -> bool {
    use sentinel_protocol::sentinel::Flag;
    [Flag::SDown, Flag::ODown, Flag::Disconnected]
        .into_iter()
        .any(|f| flags.contains(f))
}
