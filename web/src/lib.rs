//! imspector-web: a log viewer for what the imspector daemon writes, its file
//! logs or its `messages` table in SQLite, MySQL or PostgreSQL. Signed-in
//! users browse the original's tree (protocols, local ids, remote ids, days),
//! follow a conversation live, search and export; every access is written to
//! an audit log.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod html;
pub mod pages;
pub mod server;
pub mod store;
pub mod tls;
pub mod users;

use std::sync::Arc;

use crate::config::{Source, WebConfig};
use crate::store::db::Link;

/// The application for a configuration: its store, audit log and users.
pub fn app(config: &WebConfig) -> anyhow::Result<pages::App> {
    let store: Arc<dyn store::Store> = match &config.source {
        Source::Files(dir) => Arc::new(store::files::FileStore::new(dir)),
        database => {
            let link = Link::open(database)?.expect("a database source");
            Arc::new(store::sql::SqlStore::new(link)?)
        }
    };
    // Refuse to start with a users file nobody could log in with.
    users::load(&config.users)?;
    Ok(pages::App {
        store,
        auth: auth::Auth::default(),
        audit: audit::Audit::open(&config.audit, Link::open(&config.source)?)?,
        users: config.users.clone(),
    })
}
