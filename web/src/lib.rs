//! imspector-web: a log viewer for what the imspector daemon writes, its file
//! logs or its SQLite table. Signed-in users browse the original's tree
//! (protocols, local ids, remote ids, days), follow a conversation live,
//! search and export; every access is written to an audit log.

pub mod audit;
pub mod auth;
pub mod config;
pub mod html;
pub mod pages;
pub mod server;
pub mod store;
pub mod tls;
pub mod users;

use std::sync::Arc;

use crate::config::{Source, WebConfig};

/// The application for a configuration: its store, audit log and users.
pub fn app(config: &WebConfig) -> anyhow::Result<pages::App> {
    let (store, audit_db): (Arc<dyn store::Store>, _) = match &config.source {
        Source::Files(dir) => (Arc::new(store::files::FileStore::new(dir)), None),
        Source::Sqlite(db) => (
            Arc::new(store::sql::SqliteStore::open(db)?),
            Some(db.as_path()),
        ),
    };
    // Refuse to start with a users file nobody could log in with.
    users::load(&config.users)?;
    Ok(pages::App {
        store,
        auth: auth::Auth::default(),
        audit: audit::Audit::open(&config.audit, audit_db)?,
        users: config.users.clone(),
    })
}
