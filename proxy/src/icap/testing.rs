//! Helpers for the handlers' unit tests.

use std::sync::Arc;

use bytes::Bytes;

use super::handler::Judge;
use super::http::HttpRequest;
use crate::config::{Config, Settings};
use crate::filter::FilterChain;

/// A configuration and its filter chain: `badwords` (one per line) in a file
/// of its own when not empty, plus the lines of `conf`.
pub fn judge_with(badwords: &str, conf: &str) -> (Config, Arc<FilterChain>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = conf.to_string();
    if !badwords.is_empty() {
        let path = dir.path().join("badwords.txt");
        std::fs::write(&path, badwords).expect("badwords file");
        text.push_str(&format!("\nbadwords_filename={}\n", path.display()));
    }
    let settings = Settings::parse("test.conf", &text).expect("settings");
    let config = Config::from_settings(settings).expect("config");
    let filters = crate::filter::build(&config.settings).expect("filters");
    (config, Arc::new(filters))
}

pub fn request(head: &str) -> HttpRequest {
    HttpRequest::parse(Bytes::from(head.to_string())).expect("request head")
}

/// A judge of `client`'s transactions without a conversation limit, at time 1.
pub fn judge_for<'a>(config: &'a Config, filters: Arc<FilterChain>, client: &str) -> Judge<'a> {
    Judge {
        filters,
        config,
        client: client.into(),
        conversations: None,
        now: 1,
        unlogged: false,
        records: vec![],
    }
}
