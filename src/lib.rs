//! relay365: Microsoft 365 mailboxes as reliable, instant, signed events for n8n.

pub mod error;
pub mod http;
pub mod sim;
