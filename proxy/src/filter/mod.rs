//! The filter chain: every chat event passes through it before it is delivered.
//!
//! A filter may rewrite the text (the protocol re-encodes the PDU), block the
//! event (it is not delivered and is logged with filtered=1), add to the
//! categories, or ask for a notice to be shown to the local user.

use imspector_protocols::{Direction, EventType, ProtocolKind};

/// An event as the filters see it. Ids are lower-cased.
#[derive(Debug, Clone)]
pub struct FilterEvent {
    pub protocol: ProtocolKind,
    pub direction: Direction,
    pub kind: EventType,
    pub local_id: String,
    pub remote_id: String,
    pub group: bool,
    /// The text to deliver; filters may change it.
    pub text: String,
    pub blocked: bool,
    /// Appended to by filters, e.g. `2 badwords;`.
    pub categories: String,
    /// Notices to inject towards the local user.
    pub notices: Vec<String>,
}

pub trait Filter: Send + Sync {
    /// Look at (and possibly change) one event. Runs even when an earlier
    /// filter blocked it, so that later filters can react to `blocked`.
    fn apply(&self, event: &mut FilterEvent);
}

/// The filters configured, in the order they run.
#[derive(Default)]
pub struct FilterChain {
    filters: Vec<Box<dyn Filter>>,
}

impl FilterChain {
    pub fn new(filters: Vec<Box<dyn Filter>>) -> Self {
        FilterChain { filters }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn apply(&self, event: &mut FilterEvent) {
        for filter in &self.filters {
            filter.apply(event);
        }
    }
}

/// Build the chain from the configuration.
pub fn build(
    _settings: &crate::config::Settings,
) -> Result<FilterChain, crate::config::ConfigError> {
    Ok(FilterChain::default())
}
