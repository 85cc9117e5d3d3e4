//! The lifecycles of stored rows, as types: an event, a delivery and a subscription each have
//! a few states, stored as lowercase words. One enum each, so that a misspelt state is a
//! compile error rather than a query that silently matches nothing.

use std::fmt;
use std::str::FromStr;

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every state, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word stored and shown in the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?} (one of: {})",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }
    };
}

status_enum! {
    /// Where an event is: `pending` → `processing` → `completed` | `skipped` | `failed`.
    EventStatus {
        /// Stored, waiting for a processor (or for its next attempt).
        Pending => "pending",
        /// Claimed under a lease by one processor.
        Processing => "processing",
        /// Fetched, enriched, and its deliveries created.
        Completed => "completed",
        /// Nothing to deliver (the message is gone).
        Skipped => "skipped",
        /// Attempts exhausted, or a permanent error.
        Failed => "failed",
    }
}

status_enum! {
    /// Where a delivery is: `pending` → `delivered` | `failed`.
    DeliveryStatus {
        /// Waiting for its (next) attempt, or being sent.
        Pending => "pending",
        /// The target answered 2xx.
        Delivered => "delivered",
        /// Attempts exhausted; retried by hand.
        Failed => "failed",
    }
}

status_enum! {
    /// Where a subscription is at Graph.
    SubscriptionStatus {
        Active => "active",
        Expired => "expired",
        Error => "error",
        Removed => "removed",
    }
}

impl EventStatus {
    /// True for the states an event ends in (until replayed).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Skipped | Self::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_are_refused() {
        for s in EventStatus::ALL {
            assert_eq!(s.as_str().parse::<EventStatus>(), Ok(*s));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(*s));
        }
        assert!("Pending".parse::<EventStatus>().is_err());
        assert!("sent".parse::<DeliveryStatus>().is_err());
    }
}
