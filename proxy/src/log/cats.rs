//! `cats_logging_filename`: one file with a line for every event that filters
//! put in a category (non-empty `categories`), for a quick look at what was
//! caught. A line is the file log's line with protocol, local and remote id in
//! front: `protocol,localid,remoteid,client,timestamp,outgoing,type,filtered,categories,eventdata`.
//! The ids are written as their directory names in the file log (see
//! [`safe_component`]), with `,` as `%2C`: an id cannot add a field or a line.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::file::{format_line, safe_component};
use super::{private, Sink, SinkError};
use crate::event::LogEvent;

pub struct CatsSink {
    path: PathBuf,
    file: Option<File>,
}

impl CatsSink {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CatsSink {
            path: path.into(),
            file: None,
        }
    }

    fn append(&mut self, text: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(private::open_append(&self.path)?);
        }
        let result = self.file.as_mut().expect("opened above").write_all(text);
        if result.is_err() {
            // Reopen next time: the file may have been rotated away.
            self.file = None;
        }
        result
    }
}

pub fn format_cats_line(e: &LogEvent) -> String {
    format!(
        "{},{},{},{}",
        e.protocol,
        id_field(&e.local_id),
        id_field(&e.remote_id),
        format_line(e)
    )
}

/// An id as its file-log directory name, with `,` as `%2C` too, so that it is
/// one field and the line one line.
fn id_field(id: &str) -> String {
    safe_component(id).replace(',', "%2C")
}

impl Sink for CatsSink {
    fn name(&self) -> &str {
        "cats"
    }

    fn write(&mut self, events: &[LogEvent]) -> Result<(), SinkError> {
        let text: String = events
            .iter()
            .filter(|e| !e.categories.is_empty())
            .map(format_cats_line)
            .collect();
        if text.is_empty() {
            return Ok(());
        }
        self.append(text.as_bytes())
            .map_err(|source| SinkError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::event;

    #[test]
    fn only_categorised_events_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cats.log");
        let mut sink = CatsSink::new(&path);
        let mut caught = event("you are a bad\nword");
        caught.categories = "2 badwords;".into();
        sink.write(&[event("plain"), caught]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "IRC,alice,#chan,192.168.0.4:62013,1160853407,1,1,0,2 badwords;,you are a bad\\nword\n"
        );
    }

    #[test]
    fn ids_cannot_forge_fields_or_lines() {
        let mut forged = event("text\x1b[31m");
        forged.categories = "1 badwords;".into();
        forged.local_id = "a,b\r\nIRC,x,y,1.2.3.4:5,0,1,1,0,,z".into();
        forged.remote_id = "c/d,e".into();
        let line = format_cats_line(&forged);
        assert_eq!(
            line,
            "IRC,a%2Cb%0D%0AIRC%2Cx%2Cy%2C1.2.3.4:5%2C0%2C1%2C1%2C0%2C%2Cz,c%2Fd%2Ce,192.168.0.4:62013,1160853407,1,1,0,1 badwords;,text\\x1b[31m\n"
        );
        assert_eq!(line.matches(',').count(), 9);
    }
}
